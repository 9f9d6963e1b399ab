/**
 * Drift monitoring in the server, on real data: the bundled Fashion-MNIST model with its reference
 * profile, served over HTTP, shown a stream of its test images, then of the same images inverted,
 * then of test images again. The drift state, the `/monitor` answer, the warning log line, the
 * Prometheus gauges and labels fed back through `/feedback` are read as an operator would.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { before, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import sharp from 'sharp';
import { PrometheusMetrics } from '../src/observability/prometheus-metrics.js';
import { readFashionMnist } from './support/fashion-mnist.js';
import { startGrpcEndpoint } from './support/grpc-endpoint.js';
import { runCli } from './support/cli-server.js';
import { startTestServer, type TestServer, type TestServerOptions } from './support/test-server.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const REPOSITORY = join(ROOT, 'models');
/** Rows per /classify request (multipart, one file part per image). */
const PER_REQUEST = 25;
/** Below about 400 rows, the largest of a dozen features' PSI reaches the warning level by noise alone (docs/monitoring.md). */
const WINDOW = 400;
/** A served OOD threshold above the bundled profile's 122.92 (a model config's monitoring.ood.threshold). */
const TUNED_OOD_THRESHOLD = 150;

interface MonitorBody {
  monitored: boolean;
  reason?: string;
  state: string;
  drift_score: number;
  window: { rows: number; capacity: number };
  rows_since_load: number;
  top_features: { feature: string; psi: number; level: string }[];
  ood: { share: number; expected_share: number; flagged_since_load: number };
  accuracy: { expected: number; predictions: number; labelled: number; realised?: number; estimate_error?: number; expected_on_labelled?: number; caution?: string };
  class_counts: Record<string, number>;
  transitions: { from: string; to: string; at: string; score?: number; rows: number }[];
}

let garments: Buffer[];
let inverted: Buffer[];
let labels: number[];
let classNames: string[];

before(async () => {
  const data = await readFashionMnist('t10k', 1400);
  labels = data.labels;
  const png = (pixels: Uint8Array, negate: boolean) => {
    const image = sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } });
    return (negate ? image.negate() : image).png().toBuffer();
  };
  garments = await Promise.all(data.pixels.map((pixels) => png(pixels, false)));
  inverted = await Promise.all(data.pixels.map((pixels) => png(pixels, true)));
  classNames = (await readFile(join(REPOSITORY, 'fashion_mnist', 'labels.txt'), 'utf8')).trim().split('\n');
});

/**
 * A server of the bundled repository that loads only the garment classifier: the OCR and detection models beside it
 * cost ten seconds of loading that no test here reads.
 */
function garmentServer(options: Pick<TestServerOptions, 'server' | 'http'> = {}): Promise<TestServer> {
  return startTestServer({ ...options, repoDir: REPOSITORY, server: { modelControlMode: 'explicit', loadModels: ['fashion_mnist'], ...options.server } });
}

async function classify(served: TestServer, images: readonly Buffer[], requestId?: string, model = 'fashion_mnist'): Promise<void> {
  const form = new FormData();
  images.forEach((image, index) => form.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), `${index}.png`));
  const response = await fetch(`${served.url}/v2/models/${model}/classify`, { method: 'POST', body: form, headers: requestId ? { 'x-request-id': requestId } : {} });
  assert.equal(response.status, 200, await response.clone().text());
  await response.arrayBuffer();
}

async function monitorOf(served: TestServer, model = 'fashion_mnist'): Promise<MonitorBody> {
  const response = await fetch(`${served.url}/v2/models/${model}/monitor`);
  assert.equal(response.status, 200);
  return (await response.json()) as MonitorBody;
}

/** Sends `images` in requests of PER_REQUEST rows until `until` holds of the /monitor answer; the rows it took, or undefined. */
async function streamUntil(served: TestServer, images: readonly Buffer[], until: (body: MonitorBody) => boolean): Promise<number | undefined> {
  for (let start = 0; start < images.length; start += PER_REQUEST) {
    await classify(served, images.slice(start, start + PER_REQUEST));
    if (until(await monitorOf(served))) return start + PER_REQUEST;
  }
  return undefined;
}

/** A repository of its own holding a copy of the bundled garment classifier (version 1 only: tests make their own version 2), removed when the test ends. */
async function garmentRepository(t: TestContext): Promise<{ repository: string; model: string }> {
  const repository = await mkdtemp(join(tmpdir(), 'nereid-monitor-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  const model = join(repository, 'fashion_mnist');
  await cp(join(REPOSITORY, 'fashion_mnist'), model, { recursive: true, filter: (source) => !/fashion_mnist\/2$/.test(source) });
  return { repository, model };
}

/** Replaces the version policy of the copied config (the bundled one serves version 1 only). */
async function setVersionPolicy(model: string, policy: string): Promise<void> {
  const config = await readFile(join(model, 'config.yaml'), 'utf8');
  assert.match(config, /^version_policy: .*$/m);
  await writeFile(join(model, 'config.yaml'), config.replace(/^version_policy: .*$/m, `version_policy: ${policy}`));
}

function capturingLogger(lines: Record<string, unknown>[], level = 'warn') {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return pino({ level }, stream);
}

test('a stream of test images is ok, turns to drift within one window of inverted images, and back to ok after test images return', async () => {
  const logged: Record<string, unknown>[] = [];
  const metrics = new PrometheusMetrics({ processMetrics: false });
  const served = await garmentServer({
    server: {
      logger: capturingLogger(logged),
      observers: [metrics.observer],
      monitoring: { window: { capacity: WINDOW }, evaluateEvery: PER_REQUEST },
    },
  });
  metrics.attach(served.server);
  try {
    const before = await monitorOf(served);
    assert.equal(before.monitored, true);
    assert.equal(before.state, 'insufficient_data', 'no traffic yet');
    assert.equal((before as unknown as Record<string, unknown>).drift_score, undefined, 'no score from no rows: a 0 would read as "no drift"');

    const okAfter = await streamUntil(served, garments.slice(0, 400), (body) => body.state === 'ok');
    assert.ok(okAfter !== undefined && okAfter <= 200 + PER_REQUEST, `test images reached ok after ${okAfter} rows (the state's minimum sample is 200)`);
    await streamUntil(served, garments.slice(okAfter, WINDOW), () => false);
    const steady = await monitorOf(served);
    assert.equal(steady.state, 'ok', JSON.stringify(steady.top_features));
    assert.equal(steady.window.rows, WINDOW);
    assert.ok(steady.ood.share <= 0.1, `test images flagged ${steady.ood.share}`);
    assert.equal(steady.accuracy.caution, undefined, 'an ok state vouches for the label-free estimate');

    const driftAfter = await streamUntil(served, inverted.slice(0, WINDOW), (body) => body.state === 'drift');
    assert.ok(driftAfter !== undefined && driftAfter <= WINDOW, `inverted images reached drift after ${driftAfter} rows`);
    const drifted = await monitorOf(served);
    assert.match(String(drifted.accuracy.caution), /with the state drift, it may be far from the true accuracy/);
    const top = drifted.top_features.map((feature) => feature.feature);
    assert.ok(top.includes('ood.flagged') || top.includes('input.brightness'), `most drifted: ${top.join(', ')}`);
    const warning = logged.find((line) => String(line.msg).includes('→ drift'));
    assert.ok(warning, `a warning names the move to drift: ${JSON.stringify(logged)}`);
    assert.equal(warning.level, 40);

    const scrape = await metrics.metrics();
    const scrapedAt = Date.now();
    assert.match(scrape, /nereid_drift_state\{model="fashion_mnist",version="1",state="drift"\} 1/);
    assert.match(scrape, /nereid_drift_score\{model="fashion_mnist",version="1",feature="ood\.flagged"\} \d/);
    // In seconds, and as new as the scores: no older than the evaluation that moved the state to drift, and not after
    // the scrape (an order of events, not a window of wall-clock time).
    const evaluatedAt = Number(/^nereid_drift_evaluated_timestamp_seconds\{model="fashion_mnist",version="1"\} (\S+)$/m.exec(scrape)?.[1]);
    const toDrift = Date.parse([...drifted.transitions].reverse().find((transition) => transition.to === 'drift')!.at);
    assert.ok(toDrift <= evaluatedAt * 1000 && evaluatedAt * 1000 <= scrapedAt, `scores evaluated at ${evaluatedAt} s; the move to drift at ${toDrift} ms, the scrape at ${scrapedAt} ms`);
    assert.match(scrape, /nereid_prediction_confidence_count\{model="fashion_mnist",version="1"\} \d+/);
    assert.match(scrape, /nereid_predicted_class_total\{model="fashion_mnist",version="1",class="Bag"\} \d+/);
    // The baseline an alert on the flagged ratio compares with: the bundled profile's held-out false-positive rate.
    const expectedRatio = Number(/^nereid_ood_expected_ratio\{model="fashion_mnist",version="1"\} (\S+)$/m.exec(scrape)?.[1]);
    assert.ok(Math.abs(expectedRatio - drifted.ood.expected_share) < 1e-5, `${expectedRatio} against /monitor's ${drifted.ood.expected_share}`);
    assert.ok(expectedRatio > 0.03 && expectedRatio < 0.06, `expected ratio ${expectedRatio}`);
    assert.match(scrape, /nereid_expected_accuracy\{model="fashion_mnist",version="1"\} 0\.\d+/);

    const backAfter = await streamUntil(served, garments.slice(WINDOW, 1400), (body) => body.state === 'ok');
    assert.ok(backAfter !== undefined && backAfter <= 2 * WINDOW, `test images again reached ok after ${backAfter} rows`);
    const recovered = await monitorOf(served);
    const moves = recovered.transitions.map((transition) => transition.to);
    assert.equal(moves.at(-1), 'ok', JSON.stringify(recovered.transitions));
    assert.ok(moves.slice(moves.indexOf('drift')).length >= 2, `drift, then on the way down (through warning or not) ok: ${moves.join(' → ')}`);
    assert.ok(!logged.some((line) => String(line.msg).includes('→ ok')), 'settling to ok is not a warning (it is logged at info)');
    console.log(`# rows to ok: ${okAfter}; to drift after the switch: ${driftAfter}; back to ok: ${backAfter} (window ${WINDOW}, evaluated every ${PER_REQUEST})`);
  } finally {
    await served.close();
  }
});

test('a feature the reference never varied (aspect ratio 1) is judged by the share of rows that differ: 5 % of 28×30 garments stay ok, 25 % drift; a model whose config ignores it, silences the log line and raises the OOD threshold stays ok, unlogged, flagging at the rate its profile gives that threshold', async (t) => {
  const logged: Record<string, unknown>[] = [];
  // Beside the garment classifier, a copy whose config sets its own monitoring (docs/monitoring.md, "Per-model settings").
  const { repository, model } = await garmentRepository(t);
  const tuned = join(repository, 'fashion_mnist_tuned');
  await cp(model, tuned, { recursive: true });
  await writeFile(
    join(tuned, 'config.yaml'),
    `${await readFile(join(model, 'config.yaml'), 'utf8')}\nmonitoring:\n  drift: { ignore_features: [input.aspectRatio], log_state_changes: false }\n  ood: { threshold: ${TUNED_OOD_THRESHOLD} }\n`,
  );
  const metrics = new PrometheusMetrics({ processMetrics: false });
  const served = await startTestServer({
    repoDir: repository,
    server: { logger: capturingLogger(logged), observers: [metrics.observer], monitoring: { window: { capacity: WINDOW }, evaluateEvery: PER_REQUEST } },
  });
  metrics.attach(served.server);
  const stretch = (image: Buffer) => sharp(image).resize(28, 30, { fit: 'fill' }).png().toBuffer();
  const aspect = async (name = 'fashion_mnist') => {
    const body = (await (await fetch(`${served.url}/v2/models/${name}/monitor`)).json()) as MonitorBody & { features: { feature: string; psi: number; ks: number; level: string; informational?: true }[]; ood: { threshold: number } };
    return { body, feature: body.features.find((feature) => feature.feature === 'input.aspectRatio')! };
  };
  try {
    const few = await Promise.all(garments.slice(0, WINDOW).map((image, index) => (index % 20 === 0 ? stretch(image) : image)));
    for (let start = 0; start < WINDOW; start += PER_REQUEST) await classify(served, few.slice(start, start + PER_REQUEST));
    const calm = await aspect();
    assert.equal(calm.feature.ks, 0.05, '5 % of the rows differ from the constant 1');
    assert.equal(calm.feature.level, 'ok', JSON.stringify(calm.feature));
    assert.ok(calm.feature.psi < 0.1, `aspect ratio PSI ${calm.feature.psi} (it was 0.31 over degenerate bins)`);
    assert.notEqual(calm.body.state, 'drift', JSON.stringify(calm.body.transitions));
    const many = await Promise.all(garments.slice(WINDOW, 2 * WINDOW).map((image, index) => (index % 4 === 0 ? stretch(image) : image)));
    for (let start = 0; start < WINDOW; start += PER_REQUEST) await classify(served, many.slice(start, start + PER_REQUEST));
    const shifted = await aspect();
    assert.equal(shifted.feature.ks, 0.25);
    assert.equal(shifted.feature.level, 'drift');
    assert.equal(shifted.body.state, 'drift', 'a quarter of the images stretched still moves the state');
    // The warning names what moved the state: the aspect ratio, not the height, which drifted as much but does not count.
    const warning = logged.find((line) => String(line.msg).includes('→ drift')) as { drift: { top: { feature: string }[] }; msg: string } | undefined;
    assert.ok(warning, JSON.stringify(logged));
    assert.equal(warning.drift.top[0].feature, 'input.aspectRatio', warning.msg);
    assert.ok(!warning.drift.top.some((feature) => /input\.(width|height)/.test(feature.feature)), warning.msg);

    // The same quarter stretched, to the copy that ignores the aspect ratio: reported with its level, not counted.
    for (let start = 0; start < WINDOW; start += PER_REQUEST) await classify(served, many.slice(start, start + PER_REQUEST), undefined, 'fashion_mnist_tuned');
    const ignored = await aspect('fashion_mnist_tuned');
    assert.deepEqual([ignored.feature.level, ignored.feature.informational], ['drift', true]);
    assert.equal(ignored.body.state, 'ok', JSON.stringify(ignored.body.top_features));
    // Its state changes are not logged (the other model's are, above); /monitor still lists them.
    assert.deepEqual(ignored.body.transitions.map((move) => move.to), ['ok']);
    assert.ok(!logged.some((line) => String(line.msg).includes('fashion_mnist_tuned')), JSON.stringify(logged.map((line) => line.msg)));
    // Its OOD threshold: in each answer, /monitor and the metrics, with the in-distribution rate the profile's held-out scores give it.
    const profile = JSON.parse(await readFile(join(tuned, '1', 'reference.json'), 'utf8')) as { ood: { heldOutScores: number[]; heldOutFalsePositiveRate: number } };
    const expected = profile.ood.heldOutScores.filter((score) => score > TUNED_OOD_THRESHOLD).length / profile.ood.heldOutScores.length;
    assert.ok(expected < profile.ood.heldOutFalsePositiveRate, `${expected}: a higher threshold flags fewer`);
    assert.equal(ignored.body.ood.threshold, TUNED_OOD_THRESHOLD);
    assert.equal(ignored.body.ood.expected_share, expected);
    const answer = (await (await fetch(`${served.url}/v2/models/fashion_mnist_tuned/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(garments[0]) })).json()) as { ood: { threshold: number } };
    assert.equal(answer.ood.threshold, TUNED_OOD_THRESHOLD);
    const text = await metrics.metrics();
    assert.ok(text.includes(`nereid_ood_expected_ratio{model="fashion_mnist_tuned",version="1"} ${expected}`), text.split('\n').filter((line) => line.startsWith('nereid_ood_expected_ratio')).join('\n'));
    assert.ok(text.includes(`nereid_ood_expected_ratio{model="fashion_mnist",version="1"} ${profile.ood.heldOutFalsePositiveRate}`));
  } finally {
    await served.close();
  }
});

test('labels fed back by request id give the realised accuracy beside the estimate; bad feedback is refused with what was expected', async () => {
  const logged: Record<string, unknown>[] = [];
  const metrics = new PrometheusMetrics({ processMetrics: false });
  const served = await garmentServer({
    server: { logger: capturingLogger(logged, 'info'), observers: [metrics.observer], monitoring: { window: { capacity: 1000 }, state: { minSamples: 100 } } },
    http: { accessLog: true },
  });
  metrics.attach(served.server);
  try {
    const rows = 400;
    for (let start = 0; start < rows; start += PER_REQUEST) await classify(served, garments.slice(start, start + PER_REQUEST), `batch-${start}`);
    const access = logged.find((line) => line.msg === 'request completed' && String(line.url).endsWith('/classify'));
    const ood = access?.ood as { checked: number; flagged: number } | undefined;
    assert.equal(ood?.checked, PER_REQUEST, `the access log line counts every image of the multipart request: ${JSON.stringify(access)}`);
    assert.ok(ood.flagged <= PER_REQUEST / 5, `test images flagged ${ood.flagged}`);
    const feedback = labels.slice(0, rows).map((label, index) => ({
      id: `batch-${index - (index % PER_REQUEST)}/${index % PER_REQUEST}`,
      label: index % 2 === 0 ? classNames[label] : label,
    }));
    feedback.push({ id: 'never-seen', label: 0 });
    const post = (body: unknown) => fetch(`${served.url}/v2/models/fashion_mnist/feedback`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    const answer = await post({ labels: feedback });
    assert.equal(answer.status, 200);
    assert.deepEqual(await answer.json(), { accepted: rows, unknown: ['never-seen'], unknown_count: 1, ambiguous: [], ambiguous_count: 0 });

    const body = await monitorOf(served);
    assert.equal(body.accuracy.predictions, rows);
    assert.equal(body.accuracy.labelled, rows);
    assert.ok(body.accuracy.realised! > 0.85, `realised ${body.accuracy.realised}`);
    // The label-free estimate is within 3 points of what the labels say (docs/monitoring.md has the full-set figures).
    assert.ok(Math.abs(body.accuracy.estimate_error!) <= 0.03, `expected ${body.accuracy.expected} vs realised ${body.accuracy.realised}`);
    // Prometheus has the estimate over the same labelled rows and their count, for an alert on the two.
    const scrape = await metrics.metrics();
    assert.match(scrape, new RegExp(`^nereid_labelled_rows\\{model="fashion_mnist",version="1"\\} ${rows}$`, 'm'));
    const onLabelled = Number(/^nereid_expected_accuracy_on_labelled\{model="fashion_mnist",version="1"\} (\S+)$/m.exec(scrape)?.[1]);
    assert.ok(Math.abs(onLabelled - body.accuracy.expected_on_labelled!) < 1e-5, scrape);

    const refused = await post({ labels: [{ id: 'batch-0/0', label: 'Spaceship' }] });
    assert.equal(refused.status, 400);
    assert.match(((await refused.json()) as { error: string }).error, /'Spaceship' is not one of the model's 10 classes \(a label, or an index 0 to 9\): T-shirt\/top/);
    assert.equal((await post({ labels: [{ id: 'batch-0/0', label: 10 }] })).status, 400, 'an index past the last class');
    // A label as eval's class folders spell it, or an index written as text, names the class too.
    assert.deepEqual(await (await post({ labels: [{ id: 'batch-0/0', label: classNames[labels[0]].replaceAll('/', '_') }, { id: 'batch-0/1', label: String(labels[1]) }] })).json(), {
      accepted: 2,
      unknown: [],
      unknown_count: 0,
      ambiguous: [],
      ambiguous_count: 0,
    });
    const twice = await post({ labels: [{ id: 'batch-0/0', label: 1 }, { id: 'batch-0/0', label: 2 }] });
    assert.equal(twice.status, 400);
    assert.match(((await twice.json()) as { error: string }).error, /request id 'batch-0\/0' more than once/);
    const malformed = await post({ labels: [{ request: 'x' }] });
    assert.equal(malformed.status, 400);
    assert.match(((await malformed.json()) as { error: string }).error, /feedback must be \{"labels"/);
  } finally {
    await served.close();
  }
});

test('a version without a reference profile says so in /monitor and serves as before; monitoring off reads no profile', async (t) => {
  const { repository, model } = await garmentRepository(t);
  await rm(join(model, '1', 'reference.json'));
  const served = await startTestServer({ repoDir: repository });
  try {
    await classify(served, garments.slice(0, 2));
    const body = await monitorOf(served);
    assert.equal(body.monitored, false);
    assert.match(body.reason!, /no reference profile \(reference\.json\); build one with: nereid profile --model fashion_mnist/);
    const feedback = await fetch(`${served.url}/v2/models/fashion_mnist/feedback`, { method: 'POST', body: JSON.stringify({ labels: [{ id: 'a', label: 0 }] }) });
    assert.equal(feedback.status, 400);
    assert.match(((await feedback.json()) as { error: string }).error, /cannot take feedback: it has no reference profile/);
  } finally {
    await served.close();
  }
  const off = await garmentServer({ server: { monitoring: false } });
  try {
    const response = await fetch(`${off.url}/v2/models/fashion_mnist/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(garments[0]) });
    assert.equal(((await response.json()) as { ood?: unknown }).ood, undefined, 'no OOD verdict with monitoring off');
    assert.match((await monitorOf(off)).reason!, /monitoring off/);
  } finally {
    await off.close();
  }
});

test('a reload of the same version with the same profile keeps its monitor: window, state and predictions waiting for labels', async () => {
  const logged: Record<string, unknown>[] = [];
  const served = await garmentServer({
    server: { logger: capturingLogger(logged, 'info'), monitoring: { window: { capacity: 1000 }, state: { minSamples: 100 } } },
  });
  try {
    for (let start = 0; start < 200; start += PER_REQUEST) await classify(served, inverted.slice(start, start + PER_REQUEST), `before-${start}`);
    const before = await monitorOf(served);
    assert.equal(before.state, 'drift', 'inverted garments drift');
    await served.server.loadModel('fashion_mnist');
    assert.ok(logged.some((line) => String(line.msg).includes('monitoring carries on from the previous load')), 'the reload says so');
    const after = await monitorOf(served);
    assert.equal(after.state, 'drift', 'the reload did not hide the drift in progress');
    assert.equal(after.window.rows, before.window.rows);
    assert.deepEqual(after.transitions, before.transitions);
    const answer = await fetch(`${served.url}/v2/models/fashion_mnist/feedback`, {
      method: 'POST',
      body: JSON.stringify({ labels: [{ id: 'before-0/0', label: labels[0] }] }),
      headers: { 'content-type': 'application/json' },
    });
    assert.deepEqual(await answer.json(), { accepted: 1, unknown: [], unknown_count: 0, ambiguous: [], ambiguous_count: 0 }, 'a prediction made before the reload still takes its label');

    // The same state from the command line, as an operator or a cron job reads it.
    const live = await runCli(['monitor', '--model', 'fashion_mnist', '--url', served.url, '--fail-on', 'drift'], 60_000);
    assert.equal(live.code, 1, live.stderr);
    assert.match(live.stdout, /fashion_mnist version 1 \(http:\/\/127\.0\.0\.1:\d+\): state DRIFT since /);
    // The move printed is the last transition, with its own score, not whichever evaluation came last.
    const move = after.transitions.at(-1)!;
    assert.ok(live.stdout.includes(`the state last moved ${move.from} → drift on ${move.score!.toFixed(3)} at ${move.at}`), live.stdout);
    assert.match(live.stdout, /\| ood\.flagged \| \d/);
    assert.match(live.stderr, /state drift, at or beyond --fail-on drift/);
    const refused = await runCli(['monitor', '--model', 'fashion_mnist', '--url', served.url, '--data', 'x'], 60_000);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--url reads the state the server keeps: give it without --data/);
  } finally {
    await served.close();
  }
});

test('a version served without a reference profile, where another version has one, is warned of at load', async (t) => {
  const { repository, model } = await garmentRepository(t);
  // Version 2 as `nereid quantize` leaves it: a model file, no profile; a latest policy serves it alone.
  await cp(join(model, '1'), join(model, '2'), { recursive: true });
  await rm(join(model, '2', 'reference.json'));
  await setVersionPolicy(model, '{ latest: { num_versions: 1 } }');
  const logged: Record<string, unknown>[] = [];
  const served = await startTestServer({ repoDir: repository, server: { logger: capturingLogger(logged) } });
  try {
    const warning = logged.find((line) => String(line.msg).includes('has no reference profile'));
    assert.match(String(warning?.msg), /model 'fashion_mnist' version 2 has no reference profile \(reference\.json\), where version 1 has one: .*nereid profile --model fashion_mnist --version 2/);
    // The hint names the repository served, not the bundled one profile would read by default.
    assert.ok(String(warning?.msg).endsWith(`build one with nereid profile --model fashion_mnist --version 2 --model-repository ${repository} --data <in-distribution data>`), String(warning?.msg));
    const answer = await monitorOf(served);
    assert.equal(answer.monitored, false);
    // Without --version, profile would build the version the policy serves, which need not be this one.
    assert.match(String(answer.reason), /build one with: nereid profile --model fashion_mnist --version 2 /);
    // And /monitor says to name the repository served too, as the load's warning does, but without the server's path.
    assert.ok(String(answer.reason).endsWith(`--version 2 --model-repository <model repository> --data <in-distribution data>`), String(answer.reason));
    assert.ok(!String(answer.reason).includes(repository), 'no server path in a client answer');
    // A CI gate on a version nobody monitors must not pass silently.
    const gate = await runCli(['monitor', '--model', 'fashion_mnist', '--url', served.url, '--fail-on', 'drift'], 60_000);
    assert.equal(gate.code, 3, gate.stderr);
    assert.match(gate.stderr, /--fail-on drift cannot be judged: fashion_mnist version 2 is not monitored \(.*\); exiting 3/);
    const plain = await runCli(['monitor', '--model', 'fashion_mnist', '--url', served.url], 60_000);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /not monitored/);
  } finally {
    await served.close();
  }
});

test('the versions named as having a reference profile leave out one that failed to load', async (t) => {
  const { repository, model } = await garmentRepository(t);
  // Version 2 without a profile; version 3 with one, whose model file is broken: it does not load.
  await cp(join(model, '1'), join(model, '2'), { recursive: true });
  await rm(join(model, '2', 'reference.json'));
  await cp(join(model, '1'), join(model, '3'), { recursive: true });
  await writeFile(join(model, '3', 'model.onnx'), (await readFile(join(model, '1', 'model.onnx'))).subarray(0, 1000));
  await setVersionPolicy(model, '{ specific: { versions: [2, 3] } }');
  const logged: Record<string, unknown>[] = [];
  const served = await startTestServer({ repoDir: repository, server: { logger: capturingLogger(logged) } });
  try {
    assert.ok(logged.some((line) => /failed to load model 'fashion_mnist' version 3/.test(String(line.msg))), JSON.stringify(logged));
    const warning = logged.find((line) => String(line.msg).includes('has no reference profile'));
    assert.match(String(warning?.msg), /model 'fashion_mnist' version 2 has no reference profile \(reference\.json\), where version 1 has one: /);
  } finally {
    await served.close();
  }
});

test('a multipart /classify of one file names its row <id>/0, as its results list does; a raw image body keeps the bare id', async () => {
  const served = await garmentServer();
  try {
    await classify(served, [garments[0]], 'single1');
    const raw = await fetch(`${served.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: new Uint8Array(garments[1]), headers: { 'content-type': 'image/png', 'x-request-id': 'raw1' } });
    assert.equal(raw.status, 200);
    await raw.arrayBuffer();
    const response = await fetch(`${served.url}/v2/models/fashion_mnist/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ labels: [{ id: 'single1/0', label: labels[0] }, { id: 'raw1', label: labels[1] }, { id: 'single1', label: labels[0] }] }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { accepted: 2, unknown: ['single1'], unknown_count: 1, ambiguous: [], ambiguous_count: 0 });
  } finally {
    await served.close();
  }
});

test('model-level feedback finds each id in whichever loaded version predicted it; version-level feedback stays with its version', async (t) => {
  const { repository, model } = await garmentRepository(t);
  // A second version of the same weights and profile, both served, as a canary rollout has them.
  await cp(join(model, '1'), join(model, '2'), { recursive: true });
  await setVersionPolicy(model, '{ all: {} }');
  const served = await startTestServer({ repoDir: repository });
  try {
    for (const version of ['1', '2']) {
      const raw = await fetch(`${served.url}/v2/models/fashion_mnist/versions/${version}/classify`, {
        method: 'POST',
        body: new Uint8Array(garments[Number(version)]),
        headers: { 'content-type': 'image/png', 'x-request-id': `on-v${version}` },
      });
      assert.equal(raw.status, 200);
      await raw.arrayBuffer();
    }
    const post = async (path: string, ids: string[]) => {
      const response = await fetch(`${served.url}/v2/models/fashion_mnist${path}/feedback`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ labels: ids.map((id) => ({ id, label: labels[Number(id.at(-1))] })) }),
      });
      assert.equal(response.status, 200);
      return response.json();
    };
    assert.deepEqual(await post('/versions/1', ['on-v2']), { accepted: 0, unknown: ['on-v2'], unknown_count: 1, ambiguous: [], ambiguous_count: 0 });
    assert.deepEqual(await post('', ['on-v1', 'on-v2']), { accepted: 2, unknown: [], unknown_count: 0, ambiguous: [], ambiguous_count: 0 });
    for (const version of ['1', '2']) assert.equal((await monitorOf(served, `fashion_mnist/versions/${version}`)).accuracy.labelled, 1, `version ${version} took its own label`);
  } finally {
    await served.close();
  }
});

test('a gRPC request sent without an id learns the one it was given from the x-request-id response header, and its prediction takes a label by it', async () => {
  const served = await garmentServer();
  const endpoint = await startGrpcEndpoint(served.server);
  try {
    const { response, header } = await new Promise<{ response: { id: string }; header: grpc.Metadata }>((resolve, reject) => {
      let header = new grpc.Metadata();
      const call = endpoint.client.ModelInfer(
        { model_name: 'fashion_mnist', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1, 1], contents: { bytes_contents: [garments[0]] } }] },
        new grpc.Metadata(),
        (error: grpc.ServiceError | null, answer: { id: string }) => (error ? reject(error) : resolve({ response: answer, header })),
      );
      call.on('metadata', (metadata: grpc.Metadata) => (header = metadata));
    });
    assert.equal(response.id, '', 'the response id echoes the request id, which was not set, as Triton does');
    const [given] = header.get('x-request-id');
    assert.match(String(given), /^[0-9a-f-]{36}$/, 'a generated id comes back in the header metadata');
    const feedback = await fetch(`${served.url}/v2/models/fashion_mnist/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ labels: [{ id: String(given), label: labels[0] }] }),
    });
    assert.deepEqual(await feedback.json(), { accepted: 1, unknown: [], unknown_count: 0, ambiguous: [], ambiguous_count: 0 });
  } finally {
    await endpoint.close();
    await served.close();
  }
});

test('a label for a request id two predictions carried is applied to neither and reported ambiguous', async () => {
  const served = await garmentServer();
  try {
    const sneaker = labels.findIndex((label) => classNames[label] === 'Sneaker');
    const bag = labels.findIndex((label) => classNames[label] === 'Bag');
    for (const index of [sneaker, bag]) {
      const raw = await fetch(`${served.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: new Uint8Array(garments[index]), headers: { 'content-type': 'image/png', 'x-request-id': 'dupX' } });
      assert.equal(raw.status, 200);
      await raw.arrayBuffer();
    }
    const response = await fetch(`${served.url}/v2/models/fashion_mnist/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ labels: [{ id: 'dupX', label: 'Sneaker' }] }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { accepted: 0, unknown: [], unknown_count: 0, ambiguous: ['dupX'], ambiguous_count: 1 });
    const body = await monitorOf(served);
    assert.equal(body.accuracy.labelled, 0, 'neither the Sneaker nor the Bag prediction took the label');
  } finally {
    await served.close();
  }
});

test('in-distribution test images raise no drift warning while a fresh default window fills through its first few hundred rows', async (t) => {
  // Right after a start the default 1000-row window is first judged at 200 rows, where the largest of a dozen
  // features' PSI passes 0.1 by chance alone on some starts; each slice here is one start on 200 test images.
  const { repository } = await garmentRepository(t);
  const data = await readFashionMnist('t10k', 4000);
  const images = await Promise.all(data.pixels.map((pixels) => sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer()));
  const moves: string[] = [];
  for (let start = 0; start < images.length; start += 200) {
    const served = await startTestServer({ repoDir: repository, server: { logger: pino({ level: 'silent' }) } });
    try {
      await streamUntil(served, images.slice(start, start + 200), () => false);
      const body = await monitorOf(served);
      assert.equal(body.rows_since_load, 200);
      for (const move of body.transitions) moves.push(`images ${start}–${start + 199}: ${move.from} → ${move.to} (score ${move.score})`);
    } finally {
      await served.close();
    }
  }
  assert.deepEqual(moves.filter((move) => /→ (warning|drift)/.test(move)), [], moves.join('\n'));
  assert.equal(moves.length, 20, 'every start judged its 200 rows');
});
