import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RequestContext } from '../core/inference.js';
import { runImagesThrough } from './image-classification.js';
import type { ModelVersion } from './model-version.js';

/** A model that records the context each image's request came with. */
function recordingModel(seen: RequestContext[]): ModelVersion {
  const run = async (_request: unknown, context: RequestContext) => {
    seen.push({ ...context });
    return { outputs: {}, timings: {} };
  };
  return { name: 'm', batched: true, run } as unknown as ModelVersion;
}

test("the images of one request wait their turn behind each other (patient), as it was admitted once; a lone image is judged as any request", async () => {
  const seen: RequestContext[] = [];
  await runImagesThrough(recordingModel(seen), 'image', 'out', [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], { requestId: 'form' });
  assert.deepEqual(seen.map((context) => context.patient), [true, true, true]);
  seen.length = 0;
  await runImagesThrough(recordingModel(seen), 'image', 'out', [Buffer.from('a')], { requestId: 'one' });
  assert.deepEqual(seen.map((context) => context.patient), [undefined]);
});
