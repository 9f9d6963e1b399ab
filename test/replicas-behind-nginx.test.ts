/**
 * Three `nereid serve` replicas behind a real nginx, configured as docs/deploy.md tells users (passive health checks,
 * retries of refused or reset requests on the next replica), sharing one Redis response cache. Under steady load
 * through nginx the replicas are restarted one at a time — SIGTERM, wait for the exit, start again on the same port,
 * wait until nginx routes to it — and no client request fails. Beside them, workers on the same Redis drain one
 * batch job through its BullMQ queue, every record exactly once. Loopback only; the load is bounded by count.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, runCli, serveChild, spawnCli, stopChild, type ServedChild } from './support/cli-server.js';
import { startNginx, type NginxServer } from './support/nginx.js';
import { startRedisServer, type RedisTestServer } from './support/redis-server.js';

const REPLICAS = 3;
const CLIENTS = 4;
/** Distinct inputs the clients cycle through: every one is soon in the shared cache. */
const DISTINCT_INPUTS = 16;
/** Requests through nginx before the first restart and after the last. */
const STEADY_REQUESTS = 100;
/** Requests a restarted replica must have answered through nginx before the next one is stopped. */
const ROUTED_AFTER_RESTART = 5;
/** The load stops by itself after this many requests, whatever happens. */
const MAX_REQUESTS = 60_000;

let repo: string;
let redis: RedisTestServer;
let nginx: NginxServer | undefined;
let proxyUrl: string;
const ports: number[] = [];
const replicas: ServedChild[] = [];

function replicaFlags(port: number): string[] {
  return ['--http-port', String(port), '--cache-config', `redis,host=127.0.0.1,port=${redis.port}`, '--allow-metrics', 'false', '--shutdown-timeout', '10'];
}

before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'nereid-replicas-'));
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\ndynamic_batching { }\nresponse_cache { enable: true }\n');
  redis = await startRedisServer();
  // Each replica on a port found free; another test running beside this one may take that port first, so a replica that
  // cannot start gets a fresh port (twice at most). Every replica that did start is kept for after() to stop: one left
  // running would keep this file's process alive, and the suite waiting on it, long after the failure.
  const started = await Promise.allSettled(
    Array.from({ length: REPLICAS }, async () => {
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        try {
          return { port, replica: await serveChild(repo, replicaFlags(port)) };
        } catch (error) {
          if (attempt === 3) throw error;
        }
      }
    }),
  );
  for (const result of started) {
    if (result.status === 'fulfilled') {
      ports.push(result.value.port);
      replicas.push(result.value.replica);
    }
  }
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  const proxyPort = await freePort();
  proxyUrl = `http://127.0.0.1:${proxyPort}`;
  nginx = await startNginx(
    `  upstream nereid {
${ports.map((port) => `    server 127.0.0.1:${port} max_fails=1 fail_timeout=2s;`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${proxyPort};
    location / {
      proxy_pass http://nereid;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      add_header X-Upstream $upstream_addr always;
    }
  }`,
    proxyPort,
  );
});

after(async () => {
  await nginx?.stop();
  for (const replica of replicas) if (replica.child.exitCode === null) replica.child.kill('SIGKILL');
  await redis?.stop();
  await rm(repo, { recursive: true, force: true });
});

function inferBody(value: number): string {
  return JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [value, value + 1, value + 2, value + 3] }] });
}

interface CacheCounts {
  hits: number;
  misses: number;
  executions: number;
}

async function cacheCounts(port: number): Promise<CacheCounts> {
  const response = await fetch(`http://127.0.0.1:${port}/v2/models/scale/stats`);
  const [stats] = ((await response.json()) as { model_stats: { execution_count: number; inference_stats: Record<string, { count: number }> }[] }).model_stats;
  return { hits: stats!.inference_stats.cache_hit!.count, misses: stats!.inference_stats.cache_miss!.count, executions: stats!.execution_count };
}

test('the response cache is shared: an answer computed by one replica is a hit on another', async () => {
  const body = inferBody(1000);
  const first = await fetch(`http://127.0.0.1:${ports[0]}/v2/models/scale/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  assert.equal(first.status, 200);
  const before = await cacheCounts(ports[1]!);
  const second = await fetch(`http://127.0.0.1:${ports[1]}/v2/models/scale/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  assert.equal(second.status, 200);
  assert.deepEqual(await second.json(), await first.json());
  const afterHit = await cacheCounts(ports[1]!);
  assert.equal(afterHit.hits - before.hits, 1, 'the second replica found the first one\'s answer in Redis');
  assert.equal(afterHit.executions, before.executions, 'and did not run the model');
});

interface Outcome {
  ok: boolean;
  ms: number;
  duringRestart: boolean;
  upstream: string;
  error?: string;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

test('a rolling restart of the three replicas under steady load through nginx fails no request', async (t) => {
  const outcomes: Outcome[] = [];
  const routedTo = new Map<string, number>();
  let restarting = false;
  let stopAt = MAX_REQUESTS;
  let sent = 0;
  const waiters = new Set<() => void>();
  /** Resolves once `condition` holds after some answer; fails if the load stopped first. */
  const untilAnswered = (what: string, condition: () => boolean) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (condition()) {
          waiters.delete(check);
          resolve();
        } else if (sent >= stopAt && outcomes.length >= sent) {
          waiters.delete(check);
          reject(new Error(`the load ended before ${what}`));
        }
      };
      waiters.add(check);
      check();
    });

  const client = async () => {
    while (sent < stopAt) {
      const value = sent++ % DISTINCT_INPUTS;
      const duringRestart = restarting;
      const started = performance.now();
      let outcome: Outcome;
      try {
        const response = await fetch(`${proxyUrl}/v2/models/scale/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: inferBody(value) });
        const answer = (await response.json()) as { outputs?: { data: number[] }[] };
        const upstream = response.headers.get('x-upstream') ?? '';
        const ok = response.status === 200 && JSON.stringify(answer.outputs?.[0]?.data) === JSON.stringify([0, 1, 2, 3].map((offset) => 2 * (value + offset)));
        outcome = { ok, ms: performance.now() - started, duringRestart, upstream, error: ok ? undefined : `${response.status} ${JSON.stringify(answer)}` };
      } catch (error) {
        outcome = { ok: false, ms: performance.now() - started, duringRestart, upstream: '', error: String((error as Error).cause ?? error) };
      }
      outcomes.push(outcome);
      // The replica that finally answered is the last address nginx tried.
      const answeredBy = outcome.upstream.split(', ').at(-1)!;
      routedTo.set(answeredBy, (routedTo.get(answeredBy) ?? 0) + 1);
      for (const check of [...waiters]) check();
    }
  };
  const load = Promise.all(Array.from({ length: CLIENTS }, client));

  await untilAnswered(`${STEADY_REQUESTS} answers before the restarts`, () => outcomes.length >= STEADY_REQUESTS);
  restarting = true;
  const restartStarted = outcomes.length;
  const restarted: CacheCounts[] = [];
  const restartSeconds: number[] = [];
  for (let index = 0; index < REPLICAS; index++) {
    const restartBegan = performance.now();
    const address = `127.0.0.1:${ports[index]}`;
    assert.equal(await stopChild(replicas[index]!), 0, `replica ${index} drained and exited 0`);
    replicas[index] = await serveChild(repo, replicaFlags(ports[index]!));
    const routedBefore = routedTo.get(address) ?? 0;
    await untilAnswered(`nginx routed to restarted replica ${index}`, () => (routedTo.get(address) ?? 0) >= routedBefore + ROUTED_AFTER_RESTART);
    restarted.push(await cacheCounts(ports[index]!));
    restartSeconds.push(Number(((performance.now() - restartBegan) / 1000).toFixed(1)));
  }
  restarting = false;
  const restartEnded = outcomes.length;
  stopAt = Math.min(stopAt, sent + STEADY_REQUESTS);
  await load;

  const failed = outcomes.filter((outcome) => !outcome.ok);
  const during = outcomes.filter((outcome) => outcome.duringRestart).map((outcome) => outcome.ms);
  const steady = outcomes.filter((outcome) => !outcome.duringRestart).map((outcome) => outcome.ms);
  const retried = outcomes.filter((outcome) => outcome.upstream.includes(',')).length;
  const figures = {
    requests: outcomes.length,
    failed: failed.length,
    duringRestarts: during.length,
    retriedByNginx: retried,
    p50MsSteady: Number(percentile(steady, 50).toFixed(1)),
    p99MsSteady: Number(percentile(steady, 99).toFixed(1)),
    p50MsDuringRestarts: Number(percentile(during, 50).toFixed(1)),
    p99MsDuringRestarts: Number(percentile(during, 99).toFixed(1)),
    maxMsDuringRestarts: Number(Math.max(...during).toFixed(1)),
    answeredPerReplica: Object.fromEntries([...routedTo].sort()),
    restartSeconds,
    restartedReplicaCache: restarted,
  };
  t.diagnostic(JSON.stringify(figures));
  assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${outcomes.length} requests failed`);
  assert.ok(restartEnded > restartStarted, 'the load went on during the restarts');
  for (const port of ports) assert.ok((routedTo.get(`127.0.0.1:${port}`) ?? 0) > 0, `replica on ${port} answered through nginx`);
  // Each restarted replica starts with an empty process but a warm shared cache.
  for (const [index, counts] of restarted.entries()) assert.ok(counts.hits > 0, `restarted replica ${index} answered from the shared cache: ${JSON.stringify(counts)}`);
});

test('workers beside the replicas drain one batch job from the shared Redis queue, every record exactly once', async (t) => {
  const queue = `redis://127.0.0.1:${redis.port}`;
  const workers = ['w1', 'w2', 'w3'].map((name) => {
    const child = spawnCli(['worker', '--queue', queue, '--model-repository', repo, '--name', name, '--concurrency', '1']);
    let log = '';
    child.stderr!.on('data', (chunk: Buffer) => (log += chunk));
    child.stdout!.on('data', (chunk: Buffer) => (log += chunk));
    return { name, child, log: () => log, exited: new Promise((resolve) => child.once('exit', resolve)) };
  });
  t.after(async () => {
    for (const worker of workers) worker.child.kill('SIGTERM');
    await Promise.all(workers.map((worker) => worker.exited));
  });
  for (const worker of workers) {
    while (!worker.log().includes('waiting for chunks')) {
      if (worker.child.exitCode !== null) throw new Error(`worker ${worker.name} exited: ${worker.log()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const input = join(repo, 'records.jsonl');
  const records = 120;
  await writeFile(input, `${Array.from({ length: records }, (_, n) => JSON.stringify({ INPUT0: [n, n, n, n] })).join('\n')}\n`);
  const output = join(repo, 'records-out.jsonl');
  const run = await runCli(['batch', '--model', 'scale', '--input', input, '--output', output, '--queue', queue, '--chunk-size', '4', '--progress', 'none'], 300_000);
  assert.equal(run.code, 0, run.stderr);
  const lines = (await readFile(output, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { id: number; outputs: { data: number[] }[] });
  assert.equal(lines.length, records, 'one line per record');
  assert.equal(new Set(lines.map((line) => line.id)).size, records, 'each record exactly once');
  for (const line of lines) assert.deepEqual(line.outputs[0]!.data, Array(4).fill(2 * (line.id - 1)), `record ${line.id} computed once, right`);
  const busy = workers.filter((worker) => /chunk \S+ completed/.test(worker.log()));
  t.diagnostic(`chunks completed per worker: ${workers.map((worker) => `${worker.name} ${(worker.log().match(/chunk \S+ completed/g) ?? []).length}`).join(', ')}`);
  assert.ok(busy.length >= 2, 'the job was shared between workers');
});
