/**
 * A quantized version served beside its source (issue 13, "Serving"): the bundled Fashion-MNIST
 * model quantized for real by runQuantize as version 2, both served under version_policy all over
 * real HTTP. The metadata names version 2 as quantized and version 1 not, statistics and metrics
 * are per version with each one's model file size, and a version whose quantization.json is broken
 * is UNAVAILABLE naming the file while the others serve.
 */
import assert from 'node:assert/strict';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createMetricsListener, PrometheusMetrics, type MetricsListener } from '../src/observability/index.js';
import { runQuantize, type QuantizeReport } from '../src/quantize/run-quantize.js';
import { writeFashionMnistPngs } from './support/fashion-mnist.js';
import { startTestServer, type TestServer } from './support/test-server.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'fashion_mnist';
const logger = pino({ level: 'silent' });

type Json = Record<string, any>;

let work: string;
let repository: string;
let report: QuantizeReport;
let srv: TestServer;
let metrics: PrometheusMetrics;
let listener: MetricsListener;
let metricsUrl: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'nereid-quantized-serving-'));
  repository = join(work, 'models');
  const modelDir = join(repository, MODEL);
  // Without the bundled int8 version 2: this test quantizes its own, and serves every version.
  await cp(join(ROOT, 'models', MODEL), modelDir, { recursive: true, filter: (source) => !/fashion_mnist\/2$/.test(source) });
  const config = await readFile(join(modelDir, 'config.yaml'), 'utf8');
  assert.match(config, /^version_policy: .*$/m);
  await writeFile(join(modelDir, 'config.yaml'), config.replace(/^version_policy: .*$/m, 'version_policy: { all: {} }'));
  await writeFashionMnistPngs(join(work, 'calibration'), 'train', 25);
  await writeFashionMnistPngs(join(work, 'test'), 't10k', 2);
  // A serving test: the gate's figures do not matter here, so a small calibration set and a loose gate judge it.
  report = await runQuantize({ modelRepository: repository, model: MODEL, calibration: join(work, 'calibration'), minGateExamples: 5, gate: 'agreement>=0.8' }, logger);
  // Version 3: the float model with a record that lost its sizes, as a hand edit or a cut-off copy would leave it.
  await mkdir(join(modelDir, '3'));
  await copyFile(join(modelDir, '1', 'model.onnx'), join(modelDir, '3', 'model.onnx'));
  await writeFile(join(modelDir, '3', 'quantization.json'), JSON.stringify({ method: 'static', sourceVersion: '1' }));
  // Version 4: a whole record beside the float model copied over the quantized one it describes.
  await mkdir(join(modelDir, '4'));
  await copyFile(join(modelDir, '1', 'model.onnx'), join(modelDir, '4', 'model.onnx'));
  await copyFile(join(modelDir, '2', 'quantization.json'), join(modelDir, '4', 'quantization.json'));

  metrics = new PrometheusMetrics({ processMetrics: false });
  srv = await startTestServer({ repoDir: repository, server: { logger, observers: [metrics.observer] } });
  metrics.attach(srv.server);
  listener = createMetricsListener(metrics);
  metricsUrl = `http://127.0.0.1:${await listener.listen('127.0.0.1', 0)}/metrics`;
});

after(async () => {
  await listener?.close();
  await srv?.close();
  await rm(work, { recursive: true, force: true });
});

async function getJson(path: string, status = 200): Promise<Json> {
  const response = await fetch(`${srv.url}${path}`);
  const body = await response.json();
  assert.equal(response.status, status, JSON.stringify(body));
  return body;
}

test('the metadata names the quantized version among those it lists, with what it was made from', async () => {
  assert.equal(report.outputVersion, '2');
  const parameters = { quantized_versions: '2', quantization: 'int8 static QDQ', quantized_from_version: '1', quantized_size_ratio: Number(report.sizes.ratio.toFixed(4)) };
  const whole = await getJson(`/v2/models/${MODEL}`);
  assert.deepEqual(whole.versions, ['1', '2'], 'version 3 did not load');
  assert.deepEqual(whole.parameters, parameters, 'an unversioned answer describes version 2, the one an unversioned request runs');
  assert.deepEqual(whole.inputs, [{ name: 'image', datatype: 'BYTES', shape: [-1, 1] }]);

  const two = await getJson(`/v2/models/${MODEL}/versions/2`);
  assert.deepEqual(two.versions, ['2']);
  assert.deepEqual(two.parameters, parameters);

  const one = await getJson(`/v2/models/${MODEL}/versions/1`);
  assert.deepEqual(Object.keys(one).sort(), ['inputs', 'name', 'outputs', 'platform', 'versions'], 'a float version answers with the protocol fields only');
  assert.deepEqual(one.versions, ['1']);
});

test('a version whose quantization.json is broken is UNAVAILABLE naming the file; the others serve', async () => {
  const refused = await getJson(`/v2/models/${MODEL}/versions/3`, 503);
  assert.match(refused.error, /version 3 is not at ready state: fashion_mnist\/3\/quantization\.json is not a quantization record: sizes: /);
  const index = await (await fetch(`${srv.url}/v2/repository/index`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).json();
  assert.deepEqual(
    index.map((row: Json) => [row.version, row.state]),
    [
      ['1', 'READY'],
      ['2', 'READY'],
      ['3', 'UNAVAILABLE'],
      ['4', 'UNAVAILABLE'],
    ],
  );
  const copiedOver = await getJson(`/v2/models/${MODEL}/versions/4`, 503);
  assert.match(copiedOver.error, /version 4 is not at ready state: fashion_mnist\/4\/quantization\.json records a quantized model of \d+ bytes, but the version's model file is \d+ bytes/);
});

test("the dashboard's overview says which version is quantized, from which and at what size, as the metadata does", async () => {
  const overview = await getJson('/dashboard/api/overview');
  const versions = overview.models.find((model: Json) => model.name === MODEL).versions as Json[];
  const byVersion = new Map(versions.map((version) => [version.version, version]));
  assert.deepEqual(byVersion.get('2')!.quantization, { method: 'static', description: 'int8 static QDQ', from_version: '1', size_ratio: report.sizes.ratio });
  assert.equal(byVersion.get('1')!.quantization, undefined, 'the float version is not marked');
});

test('statistics and metrics are per version, with each version model file size', async () => {
  const image = await readFile(join(work, 'test', '0.png'));
  for (const version of ['1', '2', '2']) {
    const response = await fetch(`${srv.url}/v2/models/${MODEL}/versions/${version}/classify`, { method: 'POST', body: image, headers: { 'content-type': 'image/png' } });
    const answer = (await response.json()) as Json;
    assert.equal(response.status, 200, JSON.stringify(answer));
    assert.equal(answer.model_version, version);
  }
  const stats = await getJson(`/v2/models/${MODEL}/stats`);
  assert.deepEqual(
    stats.model_stats.map((entry: Json) => [entry.version, entry.inference_count]),
    [
      ['1', 1],
      ['2', 2],
    ],
  );
  assert.ok(stats.model_stats.every((entry: Json) => entry.cost.compute_seconds > 0), 'cost is counted per version');

  const text = await (await fetch(metricsUrl)).text();
  const sample = (name: string, version: string) => {
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{model="${MODEL}",version="${version}"}`));
    assert.ok(line, `${name} for version ${version}`);
    return Number(line.split(' ').at(-1));
  };
  for (const version of ['1', '2']) {
    assert.equal(sample('nereid_model_file_bytes', version), (await stat(join(repository, MODEL, version, 'model.onnx'))).size);
  }
  assert.equal(sample('nereid_model_file_bytes', '2'), report.sizes.quantizedBytes);
  assert.equal(sample('nereid_model_file_bytes', '1'), report.sizes.sourceBytes);
  // Which served version is int8, as docs/monitoring.md's query joins it: read from the version's quantization record.
  assert.ok(text.includes(`nereid_model_info{model="${MODEL}",version="2",precision="int8",quantization="static",quantized_from_version="1"} 1`), 'the quantized version is labelled int8');
  assert.ok(text.includes(`nereid_model_info{model="${MODEL}",version="1",precision="float",quantization="none",quantized_from_version=""} 1`), 'its float source is labelled float');
  assert.equal(sample('nereid_inference_count_total', '2'), 2);
  // docs/quantization.md's end-to-end query divides the pre-processing histogram's sum by the inferences: both count the same computed requests (of one row here).
  assert.equal(sample('nereid_inference_preprocess_duration_seconds_count', '2'), sample('nereid_inference_count_total', '2'));
  assert.ok(sample('nereid_inference_preprocess_duration_seconds_sum', '2') > 0, 'the PNGs were decoded in the model');
  // Version 1 was copied with the bundled reference profile, so its answers were checked for being out of distribution (a test garment is not).
  assert.equal(sample('nereid_ood_checked_total', '1'), 1);
  assert.equal(sample('nereid_ood_total', '1'), 0);
  // The quantized version has no profile of its own, so no detector: no sample, rather than a 0 that reads as 'none flagged'.
  for (const name of ['nereid_ood_checked_total', 'nereid_ood_total']) {
    assert.ok(!text.includes(`${name}{model="${MODEL}",version="2"}`), `${name} for the version without a profile`);
  }
});
