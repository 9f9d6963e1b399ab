/**
 * A closed-loop HTTP load generator on undici's Pool: `concurrency` virtual clients, each with one
 * request in flight on its own keep-alive connection, sending the next as soon as the answer is read.
 * The loop itself (runClosedLoop, src/tools/closed-loop.ts) is shared with the gRPC generator and
 * with `nereid tune`.
 */
import { Pool } from 'undici';
import { runClosedLoop, type LoadResult, type LoopSpec, type Outcome } from '../src/tools/closed-loop.js';
import type { ResponseCheck } from './workload.js';

export { percentile, runClosedLoop, summarise, type LatencySummary, type LoadResult, type LoopSpec, type Outcome } from '../src/tools/closed-loop.js';

export interface LoadSpec extends LoopSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The request body, or a function giving each request its own (requests of varied lengths). */
  body: Buffer | (() => Buffer);
  /** Checks a response body; returns a problem or undefined. */
  check: ResponseCheck;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const pool = new Pool(spec.origin, {
    connections: spec.concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const send = async (_client: number, verify: boolean): Promise<Outcome> => {
    const body = typeof spec.body === 'function' ? spec.body() : spec.body;
    const response = await pool.request({ path: spec.path, method: 'POST', headers: spec.headers, body });
    if (response.statusCode === 200 && !verify) {
      let bytes = 0;
      for await (const chunk of response.body) bytes += (chunk as Buffer).length;
      return { ok: true, bytes };
    }
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    const answer = Buffer.concat(chunks);
    if (response.statusCode !== 200) {
      return { ok: false, bytes: answer.length, problem: `HTTP ${response.statusCode}: ${answer.toString('utf8', 0, Math.min(300, answer.length))}` };
    }
    return { ok: true, bytes: answer.length, verification: { failure: spec.check(response.headers, answer) } };
  };
  try {
    return await runClosedLoop(spec, send);
  } finally {
    await pool.close().catch(() => pool.destroy());
  }
}
