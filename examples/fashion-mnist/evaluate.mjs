// Runs the exported Fashion-MNIST classifier (models/fashion_mnist/1/model.onnx) on the 10,000 test images in-process
// with onnxruntime-node and prints its accuracy: the reference the server's accuracy is compared to, and a check that
// the export matches torch (train.py prints the torch test accuracy).
//
//     node examples/fashion-mnist/evaluate.mjs          # from the repository root
//
// The idx gz files are decoded with node:zlib; the normalisation (scale, mean, std), temperature and low-confidence
// threshold are read from models/fashion_mnist/config.yaml, so this uses exactly what the server is configured with.
// FASHION_MNIST_DIR overrides the data folder (default: Debian's /usr/share/datasets/fashion-mnist).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import ort from 'onnxruntime-node';
import YAML from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const modelDir = join(root, 'models', 'fashion_mnist');
const dataDir = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';

/** An idx file: big-endian magic (0, 0, 0x08 = uint8, ndim), ndim uint32 sizes, then the bytes. */
function readIdx(name) {
  const raw = gunzipSync(readFileSync(join(dataDir, name)));
  if (raw[0] !== 0 || raw[1] !== 0 || raw[2] !== 0x08) throw new Error(`${name}: not an unsigned-byte idx file`);
  const ndim = raw[3];
  const shape = Array.from({ length: ndim }, (_, i) => raw.readUInt32BE(4 + 4 * i));
  const data = raw.subarray(4 + 4 * ndim);
  if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`${name}: ${data.length} bytes for shape ${shape}`);
  return { shape, data };
}

const config = YAML.parse(readFileSync(join(modelDir, 'config.yaml'), 'utf8'));
const input = config.input[0];
const output = config.output[0];
const pre = input.preprocess.image;
const post = output.postprocess;
const labels = readFileSync(join(modelDir, output.label_filename), 'utf8').trimEnd().split('\n');

const images = readIdx('t10k-images-idx3-ubyte.gz');
const truth = readIdx('t10k-labels-idx1-ubyte.gz').data;
const [count, height, width] = images.shape;
const size = height * width;

// Same float32 arithmetic as train.py: x = float32(pixel * scale); (x - mean) / std.
const f = Math.fround;
const scale = f(pre.scale), mean = f(pre.mean[0]), std = f(pre.std[0]);
const normalised = new Float32Array(count * size);
for (let i = 0; i < normalised.length; i++) normalised[i] = f(f(images.data[i] * scale) - mean) / std;

const session = await ort.InferenceSession.create(join(modelDir, '1', 'model.onnx'));
const batch = config.max_batch_size;
const classes = output.dims[0];
const logits = new Float32Array(count * classes);
const started = performance.now();
for (let start = 0; start < count; start += batch) {
  const n = Math.min(batch, count - start);
  const tensor = new ort.Tensor('float32', normalised.subarray(start * size, (start + n) * size), [n, 1, height, width]);
  const result = await session.run({ [input.name]: tensor });
  logits.set(result[output.name].data, start * classes);
}
const milliseconds = performance.now() - started;

let correct = 0, flagged = 0, flaggedCorrect = 0, nll = 0;
for (let i = 0; i < count; i++) {
  const row = logits.subarray(i * classes, (i + 1) * classes);
  let top = 0;
  for (let c = 1; c < classes; c++) if (row[c] > row[top]) top = c;
  // Calibrated probabilities as the server's postprocess computes them: softmax(logits / temperature).
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp((row[c] - row[top]) / post.temperature);
  const hit = top === truth[i];
  correct += hit;
  nll -= (row[truth[i]] - row[top]) / post.temperature - Math.log(sum);
  if (1 / sum < post.low_confidence_threshold) {
    flagged++;
    flaggedCorrect += hit;
  }
}

const pct = (x) => `${(x * 100).toFixed(2)}%`;
console.log(`onnxruntime-node ${ort.env.versions?.common ?? ''}: ${count} test images in batches of ${batch}, ${milliseconds.toFixed(0)} ms`);
console.log(`test accuracy (onnxruntime-node): ${pct(correct / count)} (${correct}/${count})`);
console.log(`calibrated test NLL (T = ${post.temperature}): ${(nll / count).toFixed(4)}`);
console.log(
  `low confidence (top-1 probability < ${post.low_confidence_threshold}): ${pct(flagged / count)} (${flagged}) flagged, ` +
    `${pct(flaggedCorrect / Math.max(1, flagged))} of them correct; accuracy of the rest ${pct((correct - flaggedCorrect) / (count - flagged))}`,
);
const first = Array.from(logits.subarray(0, classes), (v) => Number(v.toFixed(4)));
console.log(`first test logits: [${first.join(', ')}] -> ${labels[first.indexOf(Math.max(...first))]}`);
