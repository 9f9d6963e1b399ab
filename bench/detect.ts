/**
 * Per-image latency of the bundled object detector (CenterNet, TF.js) through the core's detect
 * path (decode and resize, queue, the TF.js forward pass in a worker, decoding boxes), one image at
 * a time, on each TF.js backend: the photos the tests use, each sent `--rounds` times after a
 * warm-up run. Prints the median and 90th percentile of the whole call and of the forward pass.
 *
 *   node --import tsx bench/detect.ts [--rounds 10]
 */
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { createServer } from '../src/server/create-server.js';

const ROOT = resolve(import.meta.dirname, '..');
const MODELS = join(ROOT, 'models');
const IMAGES = {
  'chelsea.png (451×300)': '/usr/lib/python3/dist-packages/skimage/data/chelsea.png',
  'dog.jpg (768×576)': '/usr/share/darknet/data/dog.jpg',
  'examples/images/cat.jpg': join(ROOT, 'examples', 'images', 'cat.jpg'),
};

const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 10;

const percentile = (values: number[], share: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(share * values.length))];

const config = parseYaml(await readFile(join(MODELS, 'object_detection', 'config.yaml'), 'utf8')) as Record<string, unknown>;
const server = await createServer({ modelRepository: MODELS, modelControlMode: 'explicit', logger: pino({ level: 'warn' }) });
await server.start();
console.log(`CPU: ${cpus()[0]?.model} × ${cpus().length}; ${rounds} rounds per image, one at a time`);
console.log('| TF.js backend | image | detect, median | p90 | forward pass, median | detections |');
console.log('|---|---|---|---|---|---|');
try {
  for (const engine of ['wasm', 'cpu']) {
    const override = { ...config, parameters: { tfjs_backend: engine }, instance_group: [{ kind: 'KIND_CPU', count: 1 }] };
    await server.loadModel('object_detection', { config: JSON.stringify(override) });
    for (const [name, path] of Object.entries(IMAGES)) {
      const image = await readFile(path);
      const warm = await server.detect('object_detection', [image]);
      const totals: number[] = [];
      const forward: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const { timings } = await server.detect('object_detection', [image]);
        totals.push(timings.totalMs);
        forward.push(timings.inferMs);
      }
      const found = warm.results[0].detections.map((detection) => `${detection.label} ${detection.score.toFixed(2)}`).join(', ');
      console.log(`| ${engine} | ${name} | ${percentile(totals, 0.5).toFixed(1)} ms | ${percentile(totals, 0.9).toFixed(1)} ms | ${percentile(forward, 0.5).toFixed(1)} ms | ${found} |`);
    }
  }
} finally {
  await server.close();
}
