/**
 * What the in-process distributed batch tests share: a model repository and a real redis-server for the file, and a
 * worker that takes a chunk and dies holding it (it never renews the chunk's lock nor answers), as a crashed worker does.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Worker } from 'bullmq';
import { writeBatchModels } from './batch-fixtures.js';
import { startRedisServer, type RedisTestServer } from './redis-server.js';

export interface DistributedWorkspace {
  dir: string;
  repo: string;
  redis: RedisTestServer;
  queueUrl: string;
}

/** Registers the file's before/after hooks; the fields are set once `before` has run. */
export function distributedWorkspace(name: string): DistributedWorkspace {
  const workspace = {} as DistributedWorkspace;
  before(async () => {
    workspace.dir = await mkdtemp(join(tmpdir(), `nereid-${name}-`));
    workspace.repo = join(workspace.dir, 'repo');
    await writeBatchModels(workspace.repo);
    workspace.redis = await startRedisServer();
    workspace.queueUrl = `redis://127.0.0.1:${workspace.redis.port}`;
  });
  after(async () => {
    await workspace.redis?.stop();
    if (workspace.dir) await rm(workspace.dir, { recursive: true, force: true });
  });
  return workspace;
}

/**
 * Takes the next chunk of `queueName` with a 1 s lock, as soon as one is queued, and stops without renewing the lock or
 * answering: the chunk stays active until a live worker's stalled check takes it back. Resolves with the chunk's id.
 */
export async function takeChunkAndDie(workspace: DistributedWorkspace, queueName: string): Promise<string | undefined> {
  const connection = { host: '127.0.0.1', port: workspace.redis.port, maxRetriesPerRequest: null };
  const dying = new Worker(queueName, null, { connection, lockDuration: 1_000, autorun: false });
  try {
    const token = randomUUID();
    for (const deadline = Date.now() + 20_000; ; await new Promise((resolve) => setTimeout(resolve, 50))) {
      if (Date.now() > deadline) throw new Error(`no chunk was queued on '${queueName}'`);
      const taken = await dying.getNextJob(token, { block: false });
      if (taken) return taken.id;
    }
  } finally {
    await dying.close(true);
  }
}
