/**
 * BullMQ and ioredis, loaded by the first distributed job, worker, status or cancel that talks to
 * Redis: about 200 ms of import that serving, local jobs and the library's other users do not pay.
 */
export async function loadQueueLibrary() {
  const [bullmq, ioredis] = await Promise.all([import('bullmq'), import('ioredis')]);
  return { Queue: bullmq.Queue, QueueEvents: bullmq.QueueEvents, Worker: bullmq.Worker, DelayedError: bullmq.DelayedError, Redis: ioredis.Redis };
}
