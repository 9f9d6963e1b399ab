/**
 * What the submitter, the workers and `batch status` agree on: one BullMQ queue (default
 * `nereid-batch`) shared by every job; a job's input split into chunks whose BullMQ job id is
 * `<job>/<chunk index>` (BullMQ refuses ':' in custom ids), so adding a chunk twice is a no-op;
 * the records travel inside the chunk; a small Redis hash per job holds what status reports.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { invalidArgument } from '../core/errors.js';
import type { RecordId, WireRecord } from './job-record.js';

export const DEFAULT_QUEUE_NAME = 'nereid-batch';
export const CHUNK_FORMAT = 1;

/** The data of one queued chunk: everything a worker needs, inputs included. */
export interface ChunkData {
  format: typeof CHUNK_FORMAT;
  job: string;
  index: number;
  model: string;
  version?: string;
  topK?: number;
  records: WireRecord[];
  /** Workers that could not load the chunk's model and gave the chunk back for the others (no attempt counted). */
  refusedBy?: string[];
}

/**
 * How the reason of a chunk that no worker can run begins: its model missing or not loading on every connected worker,
 * or a chunk the workers cannot read (another nereid's chunk format). Such a fault is the fleet's, not the records':
 * their job stops with them unwritten, to be run once the fleet is fixed. Any other failure (a chunk recovered from dead
 * workers more than --max-stalled-count times, as when one of its records crashes every worker that takes it) writes
 * its records as errors, so that the job ends and a rerun does not meet the same chunk again.
 */
export const UNRUNNABLE_CHUNK_REASON = 'no worker can run this chunk: ';

/** Whether a failed chunk's reason (BullMQ's failedReason, the last attempt's error message) is UNRUNNABLE_CHUNK_REASON's. */
export function isUnrunnableChunk(failedReason: string | undefined): boolean {
  return failedReason?.startsWith(UNRUNNABLE_CHUNK_REASON) ?? false;
}

/** What a worker returns for a chunk: one output line per record, in the same order. */
export interface ChunkResult {
  ids: RecordId[];
  lines: string[];
  worker: string;
  /** Model execution time attributed to this chunk (the worker's statistics since its previous chunk of that model). */
  executionNs: number;
}

const JOB_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export function isJobName(name: string): boolean {
  return JOB_NAME.test(name);
}

export function checkJobName(name: string): string {
  if (!isJobName(name)) throw invalidArgument(`job name '${name}' may use only letters, digits, '_', '.' and '-' (at most 100)`);
  return name;
}

/** The default job name: the model and a hash of what the command names, so the same command finds the same job. */
export function defaultJobName(model: string, version: string | undefined, input: string, output: string): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([model, version ?? '', resolve(input), resolve(output)]))
    .digest('hex')
    .slice(0, 10);
  return `${model.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 80)}-${hash}`;
}

/**
 * Queue options of whoever adds chunks: BullMQ's event stream keeps each finished chunk's return value (its
 * output lines) and by default 10,000 events, which would keep gigabytes of results in Redis after they were
 * written. The submitter learns of finished chunks from a poll as well, so a short stream loses nothing.
 */
export const CHUNK_QUEUE_OPTIONS = { streams: { events: { maxLen: 100 } } } as const;

export function chunkJobId(job: string, index: number): string {
  return `${job}/${index}`;
}

/** A job's chunk ids, `size` at a time: each run's Redis round trips go in parallel, and no more than `size` at once. */
export function* chunkIdRuns(job: string, chunks: number, size: number): Generator<string[]> {
  for (let start = 0; start < chunks; start += size) yield Array.from({ length: Math.min(size, chunks - start) }, (_, offset) => chunkJobId(job, start + offset));
}

/** The chunk index of a job id of `job`, or undefined for another job's chunk. */
export function chunkIndexOf(job: string, jobId: string | undefined): number | undefined {
  if (!jobId?.startsWith(`${job}/`)) return undefined;
  const index = Number(jobId.slice(job.length + 1));
  return Number.isInteger(index) && index >= 0 ? index : undefined;
}

/**
 * Redis's client list, read by a connection named `ownName`; undefined where it cannot tell who is connected: CLIENT LIST
 * refused (a managed Redis may refuse it to this user), or connection names hidden (a proxy shows its own connections,
 * and `ownName` is then missing from the list). Who is missing from it is then not known to be gone.
 */
export async function namedClientList(redis: { client(subcommand: 'LIST'): Promise<unknown> }, ownName: string): Promise<string | undefined> {
  const list = await redis.client('LIST').then(String, () => undefined);
  return list !== undefined && list.includes(` name=${ownName} `) ? list : undefined;
}

/**
 * The names of the workers connected to a queue, read from Redis's client list: BullMQ names each worker's
 * connections `<prefix>:<base64 of the queue name>:w:<worker name>`.
 */
export function workerNamesIn(clientList: string, queueName: string, prefix = 'bull'): Set<string> {
  return connectionNamesAfter(clientList, `${prefix}:${Buffer.from(queueName).toString('base64')}:w:`);
}

/** What follows `marker` in the names of the connections of Redis's client list whose name begins with it. */
function connectionNamesAfter(clientList: string, marker: string): Set<string> {
  const names = new Set<string>();
  for (const line of clientList.split('\n')) {
    const name = / name=(\S*)/.exec(line)?.[1];
    if (name?.startsWith(marker)) names.add(name.slice(marker.length));
  }
  return names;
}

/**
 * The name a job's submitter gives its Redis connection, so that `batch status` can tell from the client list whether
 * it still runs (a submitter killed with SIGKILL leaves its hash saying nothing of it).
 */
export function submitterConnectionName(queueName: string, job: string): string {
  return `nereid:${Buffer.from(queueName).toString('base64')}:submitter:${job}`;
}

/**
 * The field of a job's hash that says its submitter names its Redis connection (submitterConnectionName): without it
 * (submitted by an older nereid) the client list cannot tell whether a submitter runs.
 */
export const SUBMITTER_NAMED_FIELD = 'submitter_named';

/** The jobs whose submitter is connected to Redis now, from its client list (see submitterConnectionName). */
export function submittersIn(clientList: string, queueName: string): Set<string> {
  return connectionNamesAfter(clientList, submitterConnectionName(queueName, ''));
}

/** The Redis hash with a job's description and counters. */
export function jobMetaKey(queueName: string, job: string): string {
  return `nereid:batch:${queueName}:${job}`;
}

/** The field of a job's hash that holds the one model version every chunk of the job is answered by. */
export const PINNED_VERSION_FIELD = 'model_version';

/**
 * The field of a job's hash set by `nereid batch cancel` (when, ISO time): the submitter stops submitting and ends once
 * the chunks already running are written; a rerun of the job's command clears it and resumes.
 */
export const CANCELLED_FIELD = 'cancelled_at';

/** The field of a job's hash that says when a run wrote the job's last record (ISO time); from then the hash expires. */
export const FINISHED_FIELD = 'finished_at';

/** What pinJobVersion needs of a Redis client (ioredis's `eval`), so that ioredis's types stay out of the library's. */
interface ScriptRunner {
  eval(script: string, keys: number, ...keysAndArgs: string[]): Promise<unknown>;
}

/** Connection options as BullMQ and ioredis take them, spelled out so that their types stay out of the library's. */
export interface RedisConnectionOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: object;
  /** null: a command waits through an outage instead of failing after a few retries (what BullMQ requires). */
  maxRetriesPerRequest: null;
}

/**
 * Records `version` as the job's model version unless one is recorded already, and returns the one recorded: the
 * first to ask decides, every later caller learns its choice. Nothing is recorded for a job without a hash (a chunk
 * whose job was removed), where undefined is returned.
 */
export async function pinJobVersion(redis: ScriptRunner, metaKey: string, version: string): Promise<string | undefined> {
  const recorded = await redis.eval(
    "if redis.call('exists', KEYS[1]) == 1 then redis.call('hsetnx', KEYS[1], ARGV[1], ARGV[2]) end return redis.call('hget', KEYS[1], ARGV[1])",
    1,
    metaKey,
    PINNED_VERSION_FIELD,
    version,
  );
  return typeof recorded === 'string' && recorded !== '' ? recorded : undefined;
}

/** The URL as messages and pages show it: without its user and password. */
export function shownRedisUrl(url: string): string {
  try {
    const shown = new URL(url);
    shown.username = '';
    shown.password = '';
    return shown.toString();
  } catch {
    return '(an unreadable Redis URL)';
  }
}

/** A URL that may not parse, as an error quotes it: whatever stands between '://' and the last '@' (user and password) is left out. */
function quotedRedisUrl(url: string): string {
  return url.replace(/^([^:/]*:\/\/)[^/]*@/, '$1');
}

/**
 * Connection options from redis://[user:password@]host[:port][/db] (rediss:// for TLS). Without a
 * password in the URL it comes from NEREID_REDIS_PASSWORD when set, as the response cache's does, so
 * that it need not be on a command line other users can read (`ps`). `settingName` is how a refusal names the URL's
 * setting (the CLI's flag, or a library caller's option).
 */
export function redisConnection(url: string, settingName = 'queue'): RedisConnectionOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidArgument(`${settingName} must be a Redis URL like redis://127.0.0.1:6379, got '${quotedRedisUrl(url)}'`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw invalidArgument(`${settingName} must be a redis:// or rediss:// URL, got '${shownRedisUrl(url)}'`);
  }
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : undefined;
  if (db !== undefined && !Number.isInteger(db)) throw invalidArgument(`the database in '${shownRedisUrl(url)}' must be a number`);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : process.env.NEREID_REDIS_PASSWORD ? { password: process.env.NEREID_REDIS_PASSWORD } : {}),
    ...(db !== undefined ? { db } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}
