/**
 * An open-loop HTTP load generator: request arrival times are drawn in advance (Poisson arrivals at a
 * given rate) and each request is sent at its time whether or not earlier ones were answered, so an overloaded server faces more and more waiting requests instead of slowing its
 * clients down. Latency runs from the scheduled arrival, so a generator that falls behind, or a
 * request that waits for a free connection, is counted against the answer rather than hidden
 * (coordinated omission). A client that waits longer than the client timeout gives up (abort).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from 'undici';
import { percentile, summarise, type LatencySummary } from './load-generator.js';
import type { ResponseCheck } from './workload.js';

export interface OpenLoopSpec {
  origin: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  check: ResponseCheck;
  ratePerSecond: number;
  /** Seconds of load before the measured window (its requests are sent, not counted). */
  warmupSeconds: number;
  durationSeconds: number;
  /** From the scheduled arrival: a request unanswered by then is aborted and counted as a client timeout. */
  clientTimeoutSeconds: number;
  /** Connections, opened before the load starts; arrivals finding none free wait in the client (counted in clientQueuedMax). */
  connections: number;
  /** A GET path answered 200 without inference, used to open the connections. */
  openPath: string;
  verifyEvery: number;
  /** Seeds the Poisson arrivals, so two targets get the same schedule. */
  seed?: number;
  /** Bursty traffic: arrivals only during `onMs` of every `onMs + offMs`, at the rate that keeps the same mean. Absent: steady. */
  onOff?: OnOff;
}

export interface OnOff {
  onMs: number;
  offMs: number;
}

/** What one generator thread counts, and what the threads' counts add up to. */
interface OpenLoopCounts {
  /** Requests scheduled in the measured window (what the counts below are counts of). */
  scheduled: number;
  /** 200 answers to the window's requests. */
  successes: number;
  /** Non-200 answers by status code. */
  refusalsByStatus: Record<string, number>;
  /** Refusals that carried a Retry-After header, and a few distinct values of it. */
  refusalsWithRetryAfter: number;
  retryAfter: string[];
  clientTimeouts: number;
  connectionErrors: number;
  errorSamples: string[];
  /** Most requests waiting in the client for a free connection at once (summed over threads). */
  clientQueuedMax: number;
  /**
   * Share of the time from the start to the last request sent that the generator's event loop was
   * busy (the busiest thread): near 1, answers waited to be read and requests to be sent, so the
   * latencies include the generator's own delay.
   */
  generatorBusy: number;
  verified: number;
  verifyFailed: number;
  verifyFailures: string[];
  /** Wall-clock ms (performance.timeOrigin + performance.now(), comparable across threads): the last request sent, and every request settled. */
  loadStopEpochMs: number;
  settledEpochMs: number;
}

/** One generator thread's counts and samples (threads' parts are combined by combineOpenLoop). */
export interface OpenLoopPart extends OpenLoopCounts {
  /** Requests sent (or queued for a free connection) while the measured window ran (by the clock, not the schedule). */
  sentInWindow: number;
  /** 200 answers received while the measured window ran. */
  answeredInWindow: number;
  /** Milliseconds from the scheduled arrival: 200 answers, and non-200 answers. */
  successLatenciesMs: number[];
  refusalLatenciesMs: number[];
  /** Milliseconds the generator sent after the scheduled time (the window's requests). */
  sendLagsMs: number[];
}

export interface OpenLoopResult extends OpenLoopCounts {
  targetRatePerSecond: number;
  /** Requests sent while the measured window ran, and that ÷ its seconds. */
  sentInWindow: number;
  achievedRatePerSecond: number;
  /** 200 answers received while the measured window ran ÷ its seconds. */
  goodputPerSecond: number;
  successLatency: LatencySummary;
  refusalLatency: LatencySummary;
  sendLagP99Ms: number;
  sendLagMaxMs: number;
}

/** Requests due this soon are sent now: the dispatcher sleeps on timers, whose grain is a millisecond, and never spins. */
const SEND_AHEAD_MS = 1;

/** performance.now() as wall-clock ms, comparable between threads (each has its own timeOrigin). */
export const epochNow = () => performance.timeOrigin + performance.now();

const addInto = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [key, count] of Object.entries(from)) into[key] = (into[key] ?? 0) + count;
  return into;
};
const fewDistinct = (lists: string[][]) => [...new Set(lists.flat())].slice(0, 5);
const sum = (parts: OpenLoopPart[], key: keyof OpenLoopPart) => parts.reduce((total, part) => total + (part[key] as number), 0);

/** The generator threads' parts as one result, at the rate they were offered together. */
export function combineOpenLoop(parts: OpenLoopPart[], ratePerSecond: number, durationSeconds: number): OpenLoopResult {
  const sendLags = Float64Array.from(parts.flatMap((part) => part.sendLagsMs)).sort();
  return {
    targetRatePerSecond: ratePerSecond,
    sentInWindow: sum(parts, 'sentInWindow'),
    achievedRatePerSecond: sum(parts, 'sentInWindow') / durationSeconds,
    scheduled: sum(parts, 'scheduled'),
    goodputPerSecond: sum(parts, 'answeredInWindow') / durationSeconds,
    successes: sum(parts, 'successes'),
    refusalsByStatus: parts.reduce((into, part) => addInto(into, part.refusalsByStatus), {} as Record<string, number>),
    refusalsWithRetryAfter: sum(parts, 'refusalsWithRetryAfter'),
    retryAfter: fewDistinct(parts.map((part) => part.retryAfter)),
    clientTimeouts: sum(parts, 'clientTimeouts'),
    connectionErrors: sum(parts, 'connectionErrors'),
    errorSamples: fewDistinct(parts.map((part) => part.errorSamples)),
    successLatency: summarise(parts.flatMap((part) => part.successLatenciesMs)),
    refusalLatency: summarise(parts.flatMap((part) => part.refusalLatenciesMs)),
    sendLagP99Ms: percentile(sendLags, 0.99),
    sendLagMaxMs: sendLags.length ? sendLags[sendLags.length - 1] : NaN,
    clientQueuedMax: sum(parts, 'clientQueuedMax'),
    generatorBusy: Math.max(...parts.map((part) => part.generatorBusy)),
    verified: sum(parts, 'verified'),
    verifyFailed: sum(parts, 'verifyFailed'),
    verifyFailures: parts.flatMap((part) => part.verifyFailures).slice(0, 5),
    loadStopEpochMs: Math.max(...parts.map((part) => part.loadStopEpochMs)),
    settledEpochMs: Math.max(...parts.map((part) => part.settledEpochMs)),
  };
}

/** A small seeded generator (mulberry32), so that every target is offered the same arrival times. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Poisson arrival offsets in ms from the start, for `seconds` of load at `rate` per second on
 * average. On-off: a Poisson stream over the on-periods only, at the rate that keeps the mean
 * (its clock stops while off).
 */
export function arrivalSchedule(rate: number, seconds: number, seed = 1, onOff?: OnOff): Float64Array {
  const onShare = onOff ? onOff.onMs / (onOff.onMs + onOff.offMs) : 1;
  const gapMs = (1000 * onShare) / rate;
  const wallMs = (onMs: number) => (onOff ? Math.floor(onMs / onOff.onMs) * (onOff.onMs + onOff.offMs) + (onMs % onOff.onMs) : onMs);
  const random = seededRandom(seed);
  const times: number[] = [];
  for (let at = -Math.log(1 - random()) * gapMs; wallMs(at) < seconds * 1000; at += -Math.log(1 - random()) * gapMs) times.push(wallMs(at));
  return Float64Array.from(times);
}

const FIRST_VERIFIED = 3;

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** An open loop ready to start: its connections are open and its schedule drawn. */
export interface PreparedOpenLoop {
  /** Starts at `startEpochMs` (wall-clock ms); calls onLoadStop when the last request is sent; resolves when every request has settled. */
  run(startEpochMs: number, onLoadStop: (epochMs: number) => void): Promise<OpenLoopPart>;
}

export async function prepareOpenLoop(spec: OpenLoopSpec): Promise<PreparedOpenLoop> {
  const schedule = arrivalSchedule(spec.ratePerSecond, spec.warmupSeconds + spec.durationSeconds, spec.seed, spec.onOff);
  const clients = Array.from(
    { length: spec.connections },
    () =>
      new Client(spec.origin, {
        pipelining: 1,
        keepAliveTimeout: 600_000,
        keepAliveMaxTimeout: 600_000,
        // The client timeout (an abort) decides when a client gives up, not undici's own timers.
        headersTimeout: 0,
        bodyTimeout: 0,
      }),
  );
  await openConnections(clients, spec.openPath);
  return { run: (startEpochMs, onLoadStop) => runPrepared(spec, schedule, clients, startEpochMs - performance.timeOrigin, onLoadStop) };
}

async function runPrepared(
  spec: OpenLoopSpec,
  schedule: Float64Array,
  clients: Client[],
  startMs: number,
  onLoadStop: (epochMs: number) => void,
): Promise<OpenLoopPart> {
  const windowStartMs = spec.warmupSeconds * 1000;
  const windowEndMs = windowStartMs + spec.durationSeconds * 1000;
  const timeoutMs = spec.clientTimeoutSeconds * 1000;
  const inWindow = (offsetMs: number) => offsetMs >= windowStartMs && offsetMs < windowEndMs;
  const part: OpenLoopPart = {
    scheduled: 0,
    sentInWindow: 0,
    successes: 0,
    answeredInWindow: 0,
    refusalsByStatus: {},
    refusalsWithRetryAfter: 0,
    retryAfter: [],
    clientTimeouts: 0,
    connectionErrors: 0,
    errorSamples: [],
    successLatenciesMs: [],
    refusalLatenciesMs: [],
    sendLagsMs: [],
    clientQueuedMax: 0,
    generatorBusy: 0,
    verified: 0,
    verifyFailed: 0,
    verifyFailures: [],
    loadStopEpochMs: 0,
    settledEpochMs: 0,
  };
  const noteError = (message: string) => {
    if (part.errorSamples.length < 5 && !part.errorSamples.includes(message)) part.errorSamples.push(message);
  };

  // Arrivals finding every connection busy wait here, first come first served. Connections are taken
  // from a free list: undici's Pool looks for a free one by walking all of them, which at a thousand
  // connections and thousands of requests a second costs the generator more than sending does.
  const free = [...clients];
  const waiting: Arrival[] = [];
  let waitingHead = 0;
  // Requests on a connection, in arrival order (connections go to arrivals in that order, so their
  // deadlines are in order too): the sweeper aborts the ones past their deadline, from the head.
  const inFlight: Arrival[] = [];
  let inFlightHead = 0;
  let pending = 0;
  let allSent = false;
  let settle: () => void = () => {};
  const settled = new Promise<void>((resolve) => (settle = resolve));
  const finishOne = () => {
    pending -= 1;
    if (allSent && pending === 0) settle();
  };

  /** Counts a request that got no answer: given up by the client, or failed on the connection. */
  const noteFailure = (arrival: Arrival, error?: unknown) => {
    if (!arrival.counted) return;
    if (error === undefined || arrival.controller.signal.aborted) {
      part.clientTimeouts += 1;
    } else {
      part.connectionErrors += 1;
      const { code, message } = error as { code?: string; message: string };
      noteError(`${code ?? (error as Error).name}: ${message}`);
    }
  };

  /** Gives a freed connection to the oldest waiting arrival still within its deadline, or back to the free list. */
  const release = (client: Client) => {
    const now = performance.now();
    while (waitingHead < waiting.length) {
      const arrival = waiting[waitingHead++];
      if (arrival.deadlineMs > now) return transmit(arrival, client);
      noteFailure(arrival);
      finishOne();
    }
    waiting.length = 0;
    waitingHead = 0;
    free.push(client);
  };

  const transmit = (arrival: Arrival, client: Client) => {
    inFlight.push(arrival);
    void (async () => {
      try {
        const response = await client.request({ path: spec.path, method: 'POST', headers: spec.headers, body: spec.body, signal: arrival.controller.signal });
        let body: Buffer | undefined;
        if (arrival.verify || response.statusCode !== 200) {
          const chunks: Buffer[] = [];
          for await (const chunk of response.body) chunks.push(chunk as Buffer);
          body = Buffer.concat(chunks);
        } else {
          await response.body.dump({ limit: Number.MAX_SAFE_INTEGER });
        }
        const finishedMs = performance.now();
        const latencyMs = finishedMs - arrival.scheduledMs;
        if (response.statusCode === 200) {
          if (finishedMs - startMs >= windowStartMs && finishedMs - startMs < windowEndMs) part.answeredInWindow += 1;
          if (arrival.verify) {
            part.verified += 1;
            const failure = spec.check(response.headers, body!);
            if (failure !== undefined) {
              part.verifyFailed += 1;
              if (part.verifyFailures.length < 5) part.verifyFailures.push(failure);
            }
          }
          if (arrival.counted) {
            part.successes += 1;
            part.successLatenciesMs.push(latencyMs);
          }
          return;
        }
        if (!arrival.counted) return;
        const status = String(response.statusCode);
        part.refusalsByStatus[status] = (part.refusalsByStatus[status] ?? 0) + 1;
        part.refusalLatenciesMs.push(latencyMs);
        const retry = headerText(response.headers['retry-after']);
        if (retry !== undefined) {
          part.refusalsWithRetryAfter += 1;
          if (part.retryAfter.length < 5 && !part.retryAfter.includes(retry)) part.retryAfter.push(retry);
        }
        noteError(`HTTP ${status}: ${body!.toString('utf8', 0, Math.min(200, body!.length))}`);
      } catch (error) {
        noteFailure(arrival, error);
      } finally {
        arrival.done = true;
        finishOne();
        // An aborted request closed its connection; undici opens a new one for the next request.
        release(client);
      }
    })();
  };

  const send = (index: number) => {
    const offsetMs = schedule[index];
    const scheduledMs = startMs + offsetMs;
    const sentMs = performance.now();
    const counted = inWindow(offsetMs);
    if (counted) {
      part.scheduled += 1;
      part.sendLagsMs.push(sentMs - scheduledMs);
    }
    if (sentMs - startMs >= windowStartMs && sentMs - startMs < windowEndMs) part.sentInWindow += 1;
    const arrival: Arrival = {
      scheduledMs,
      deadlineMs: scheduledMs + timeoutMs,
      counted,
      verify: index < FIRST_VERIFIED || index % spec.verifyEvery === 0,
      controller: new AbortController(),
      done: false,
    };
    pending += 1;
    const client = free.pop();
    if (client) return transmit(arrival, client);
    if (waitingHead > 4096) {
      waiting.splice(0, waitingHead);
      waitingHead = 0;
    }
    waiting.push(arrival);
    part.clientQueuedMax = Math.max(part.clientQueuedMax, waiting.length - waitingHead);
  };

  const sweeper = setInterval(() => {
    const now = performance.now();
    while (inFlightHead < inFlight.length && (inFlight[inFlightHead].done || inFlight[inFlightHead].deadlineMs <= now)) {
      const arrival = inFlight[inFlightHead];
      if (!arrival.done) arrival.controller.abort();
      inFlightHead += 1;
    }
    // Drop what the sweeper has passed, now and then, so the list does not grow with the run.
    if (inFlightHead > 4096) {
      inFlight.splice(0, inFlightHead);
      inFlightHead = 0;
    }
  }, 20);

  // The dispatcher: sends every request due within SEND_AHEAD_MS, then sleeps on a timer until the next one is. It
  // used to yield to I/O and look again until a request less than a millisecond away was due: up to a millisecond of
  // spinning per request. The dispatch loop alone (no requests sent) used 14 % of a core at 300 arrivals a second and
  // 42 % at 1,000 that way, 4-5 % sleeping on timers: CPU taken from the server on the same cores.
  // Latency still counts from the scheduled time, so a request sent early is at most SEND_AHEAD_MS in the server's favour.
  let next = 0;
  let loopAtStart = performance.eventLoopUtilization();
  await new Promise<void>((resolve) => {
    const dispatch = () => {
      const nowOffset = performance.now() - startMs;
      while (next < schedule.length && schedule[next] <= nowOffset + SEND_AHEAD_MS) send(next++);
      if (next >= schedule.length) return resolve();
      setTimeout(dispatch, Math.max(0, Math.floor(schedule[next] - SEND_AHEAD_MS - (performance.now() - startMs))));
    };
    setTimeout(() => {
      loopAtStart = performance.eventLoopUtilization();
      dispatch();
    }, Math.max(0, startMs - performance.now()));
  });
  part.generatorBusy = performance.eventLoopUtilization(loopAtStart).utilization;
  part.loadStopEpochMs = epochNow();
  onLoadStop(part.loadStopEpochMs);
  allSent = true;
  if (pending === 0) settle();
  await settled;
  part.settledEpochMs = epochNow();
  clearInterval(sweeper);
  await Promise.all(clients.map((client) => client.close().catch(() => client.destroy())));
  return part;
}

/** One scheduled request, from its arrival to its answer. */
interface Arrival {
  scheduledMs: number;
  /** When the client gives up on it (the scheduled time plus the client timeout). */
  deadlineMs: number;
  /** Scheduled inside the measured window. */
  counted: boolean;
  verify: boolean;
  controller: AbortController;
  done: boolean;
}

/**
 * Opens every connection before the load (one GET each, all at once): a cold client would open them
 * under load, and a burst of connects overflowing the server's accept queue costs seconds of SYN
 * retransmits that would be counted as the server's latency.
 */
async function openConnections(clients: Client[], path: string): Promise<void> {
  const answers = await Promise.allSettled(clients.map((client) => client.request({ path, method: 'GET' }).then((response) => response.body.dump())));
  const failed = answers.filter((answer) => answer.status === 'rejected');
  if (failed.length > 0) throw new Error(`opening ${clients.length} connections: ${failed.length} failed (${(failed[0] as PromiseRejectedResult).reason})`);
}

/** One inference request, as the probes send it. */
export interface ProbeRequest {
  origin: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** Sends one request on `client`; returns its status and milliseconds (the body read). */
async function timedRequest(client: Client, probe: ProbeRequest, signal?: AbortSignal): Promise<{ status: number; ms: number }> {
  const sentMs = performance.now();
  const response = await client.request({ path: probe.path, method: 'POST', headers: probe.headers, body: probe.body, signal });
  await response.body.dump({ limit: Number.MAX_SAFE_INTEGER });
  return { status: response.statusCode, ms: performance.now() - sentMs };
}

/** The latency of an idle server: the median of `count` requests sent one at a time, after a few unmeasured. */
export async function unloadedLatencyMs(probe: ProbeRequest, count = 20): Promise<number> {
  const client = new Client(probe.origin, { keepAliveTimeout: 60_000 });
  try {
    const latencies: number[] = [];
    for (let index = 0; index < count + 5; index++) {
      const { status, ms } = await timedRequest(client, probe);
      if (status !== 200) throw new Error(`an unloaded request got HTTP ${status}`);
      if (index >= 5) latencies.push(ms);
    }
    return summarise(latencies).p50;
  } finally {
    await client.close().catch(() => client.destroy());
  }
}

export interface RecoveryResult {
  /** Seconds from the load stopping to the end of the first probe answered 200 within thresholdMs; undefined: not within the limit. */
  seconds?: number;
  thresholdMs: number;
  limitSeconds: number;
  probes: number;
  /** The first probe's outcome (status and ms, or the error), to show what a client met right after the load. */
  firstProbe: string;
}

/**
 * After the load stops: one request at a time on a connection of its own (so it does not wait
 * behind the load's client queue), a new one every `everyMs`, until one is answered 200 within
 * `thresholdMs` or `limitSeconds` pass.
 */
export async function probeRecovery(
  probe: ProbeRequest,
  spec: { loadStopMs: number; thresholdMs: number; everyMs: number; limitSeconds: number },
): Promise<RecoveryResult> {
  const client = new Client(probe.origin, { headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 60_000 });
  const deadlineMs = spec.loadStopMs + spec.limitSeconds * 1000;
  const result: RecoveryResult = { thresholdMs: spec.thresholdMs, limitSeconds: spec.limitSeconds, probes: 0, firstProbe: '' };
  try {
    for (;;) {
      const sentMs = performance.now();
      if (sentMs >= deadlineMs) return result;
      result.probes += 1;
      let outcome: string;
      let recovered = false;
      try {
        const { status, ms } = await timedRequest(client, probe, AbortSignal.timeout(Math.max(1, Math.ceil(deadlineMs - sentMs))));
        outcome = `HTTP ${status} in ${ms.toFixed(1)} ms`;
        recovered = status === 200 && ms <= spec.thresholdMs;
      } catch (error) {
        outcome = `${(error as { code?: string }).code ?? (error as Error).name} after ${(performance.now() - sentMs).toFixed(1)} ms`;
      }
      if (result.probes === 1) result.firstProbe = outcome;
      const doneMs = performance.now();
      if (recovered) return { ...result, seconds: (doneMs - spec.loadStopMs) / 1000 };
      const waitMs = sentMs + spec.everyMs - doneMs;
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  } finally {
    await client.close().catch(() => client.destroy());
  }
}

/** Resident memory of a process, sampled every `everyMs` from /proc/<pid>/status (Linux). */
export class RssSampler {
  readonly samples: { atMs: number; bytes: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    everyMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): void {
    const bytes = rssBytes(this.pid);
    if (bytes !== undefined) this.samples.push({ atMs: performance.now(), bytes });
  }

  /** The largest sample between two performance.now() times. */
  peak(fromMs: number, toMs: number): number | undefined {
    const within = this.samples.filter((s) => s.atMs >= fromMs && s.atMs <= toMs).map((s) => s.bytes);
    return within.length ? Math.max(...within) : undefined;
  }

  /** The first sample at or after a time. */
  at(atMs: number): number | undefined {
    return this.samples.find((s) => s.atMs >= atMs)?.bytes;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
