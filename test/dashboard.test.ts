/**
 * The web dashboard against a real server (the bundled Fashion-MNIST model, a generated one and a
 * broken one): its JSON/SSE API gives the numbers /v2/models/stats gives, and in headless Chromium
 * (Debian's, driven by playwright-core) the pages show them, the try-it panel classifies a photo,
 * an unavailable model shows its reason and a server with tokens asks for one. Screenshots of each
 * page go to .scratch/dashboard/ for a person to look at.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { quantileBetween } from '../src/frontends/http/dashboard-data.js';
import { PrometheusMetrics } from '../src/observability/index.js';
import { writeModel } from '../src/onnx/test-models.js';
import { writeFashionMnistPngs } from './support/fashion-mnist.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

const SCREENSHOTS = join(process.cwd(), '.scratch', 'dashboard');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MANAGEMENT_TOKEN = 'dashboard-management-token';
const INFERENCE_TOKEN = 'dashboard-inference-token';
const LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

async function writeRepository(dir: string): Promise<void> {
  await cp(join(process.cwd(), 'models', 'fashion_mnist'), join(dir, 'fashion_mnist'), { recursive: true });
  await writeSimpleModel(dir);
  await writeModel(dir, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
}

const simpleRequest = JSON.stringify({
  inputs: [
    { name: 'INPUT0', shape: [1, 16], datatype: 'INT32', data: Array.from({ length: 16 }, (_, i) => i) },
    { name: 'INPUT1', shape: [1, 16], datatype: 'INT32', data: Array.from({ length: 16 }, () => 1) },
  ],
});

async function json(url: string, init?: RequestInit): Promise<Json> {
  const response = await fetch(url, init);
  assert.equal(response.status, 200, `${url}: ${await response.clone().text()}`);
  return (await response.json()) as Json;
}

/** Reads Server-Sent Events from the stream, one `data` object per call. */
async function openStream(url: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  return {
    async next(): Promise<Json> {
      for (;;) {
        const end = buffered.indexOf('\n\n');
        if (end >= 0) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          return JSON.parse(event.split('\n').find((line) => line.startsWith('data: '))!.slice(6)) as Json;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('the stream ended');
        buffered += value;
      }
    },
    close: () => controller.abort(),
  };
}

describe('dashboard', () => {
  let repoDir: string;
  let imagesDir: string;
  let open: TestServer;
  let guarded: TestServer;
  let browser: Browser;

  before(async () => {
    repoDir = await mkdtemp(join(tmpdir(), 'nereid-dashboard-'));
    imagesDir = join(repoDir, '..', `${repoDir.split('/').pop()}-images`);
    await writeRepository(repoDir);
    await writeFashionMnistPngs(imagesDir, 't10k', 1);
    await mkdir(SCREENSHOTS, { recursive: true });
    const metrics = new PrometheusMetrics({ processMetrics: false, usdPerCoreHour: 0.05 });
    open = await startTestServer({
      repoDir,
      server: { observers: [metrics.observer], costPerCoreHour: 0.05 },
      http: { dashboardHistograms: (model, version) => metrics.histogramSnapshot(model, version) },
    });
    metrics.attach(open.server);
    guarded = await startTestServer({ models: writeSimpleModel, http: { authTokens: { management: [MANAGEMENT_TOKEN], inference: [INFERENCE_TOKEN] } } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await open?.close();
    await guarded?.close();
    await rm(repoDir, { recursive: true, force: true });
    await rm(imagesDir, { recursive: true, force: true });
  });

  const infer = (count: number) =>
    Promise.all(Array.from({ length: count }, () => json(`${open.url}/v2/models/simple/infer`, { method: 'POST', body: simpleRequest, headers: { 'content-type': 'application/json' } })));
  const classify = async (count: number) => {
    const image = await readFile(join(imagesDir, '0.png'));
    return Promise.all(Array.from({ length: count }, () => json(`${open.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: image, headers: { 'content-type': 'image/png' } })));
  };

  test('the overview answer holds /v2/models/stats as it is, the index, the monitor and the process', async () => {
    await infer(3);
    await classify(2);
    const [overview, stats] = [await json(`${open.url}/dashboard/api/overview`), await json(`${open.url}/v2/models/stats`)];
    const versions = overview.models.flatMap((model: Json) => model.versions);
    for (const entry of stats.model_stats) {
      const shown = versions.find((version: Json) => version.name === entry.name && version.version === entry.version);
      assert.deepEqual(shown.stats, entry, `${entry.name}: the dashboard's statistics are /stats's`);
    }
    const broken = versions.find((version: Json) => version.name === 'broken');
    assert.equal(broken.state, 'UNAVAILABLE');
    assert.match(broken.reason, /.+/);
    const fashion = versions.find((version: Json) => version.name === 'fashion_mnist');
    assert.equal(fashion.takes_images, true);
    assert.equal(fashion.monitor.monitored, true, 'the bundled model has a reference profile: /monitor answers');
    assert.equal(fashion.histograms.request.count, 2, 'the metrics histograms saw the two classify requests');
    assert.equal(fashion.stats.cost.usd_per_core_hour, 0.05);
    assert.ok(overview.server.rss_bytes > 0 && overview.server.uptime_s > 0 && overview.server.cpu_s > 0);
  });

  test('the stream sends a snapshot a second and, from the second on, what happened in between', async () => {
    const stream = await openStream(`${open.url}/dashboard/api/stream`);
    try {
      const first = await stream.next();
      assert.equal(first.interval, undefined, 'the first event has nothing to compare with');
      await infer(5);
      const second = await stream.next();
      const simple = second.interval.versions['simple/1'];
      const counted = (event: Json) => event.snapshot.models.find((model: Json) => model.name === 'simple').versions[0].stats.inference_stats.success.count;
      assert.equal(Math.round(simple.requests_per_s * second.interval.seconds), counted(second) - counted(first));
      assert.ok(simple.requests_per_s > 0);
      assert.ok(simple.percentiles.request.p50 > 0 && simple.percentiles.request.p50 <= simple.percentiles.request.p99);
      assert.ok(simple.mean_ms.compute_infer > 0);
    } finally {
      stream.close();
    }
  });

  test('a draining server ends its streams, so that they do not hold the drain', async () => {
    const draining = await startTestServer({ models: writeSimpleModel });
    try {
      const stream = await openStream(`${draining.url}/dashboard/api/stream`);
      await stream.next();
      draining.server.drain();
      await assert.rejects(async () => {
        for (;;) await stream.next();
      }, /the stream ended/);
    } finally {
      await draining.close();
    }
  });

  test('percentiles between two histogram readings interpolate inside the bucket the rank falls in', () => {
    const le = [1, 2, 4];
    const before = { le, cumulative: [10, 10, 10], count: 10, sum: 5 };
    const after = { le, cumulative: [10, 20, 30], count: 30, sum: 50 };
    // Of the 20 observations in between, 10 are in (1, 2] and 10 in (2, 4]: the median is the top of the first.
    assert.equal(quantileBetween(before, after, 0.5), 2);
    assert.equal(quantileBetween(before, after, 0.75), 3);
    assert.equal(quantileBetween(after, after, 0.5), undefined, 'nothing observed in between');
    assert.equal(quantileBetween(before, after, 0.75, false), 4, 'without interpolation: the upper bound of the bucket the rank falls in');
  });

  test('with tokens, the pages open but the API takes the management token only', async () => {
    assert.equal((await fetch(`${guarded.url}/dashboard/`)).status, 200);
    assert.equal((await fetch(`${guarded.url}/dashboard/assets/app.js`)).status, 200);
    assert.equal((await fetch(`${guarded.url}/dashboard/api/overview`)).status, 401);
    assert.equal((await fetch(`${guarded.url}/dashboard/api/overview`, { headers: { authorization: `Bearer ${INFERENCE_TOKEN}` } })).status, 401);
    assert.equal((await fetch(`${guarded.url}/dashboard/api/overview`, { headers: { authorization: `Bearer ${MANAGEMENT_TOKEN}` } })).status, 200);
    assert.equal((await fetch(`${guarded.url}/dashboard/assets/..%2f..%2fpackage.json`)).status, 404, 'only the listed files are served');
  });

  test('--dashboard false serves none of it', async () => {
    const off = await startTestServer({ models: writeSimpleModel, http: { dashboard: false } });
    try {
      assert.equal((await fetch(`${off.url}/dashboard/`)).status, 404);
      assert.equal((await fetch(`${off.url}/dashboard/api/overview`)).status, 404);
    } finally {
      await off.close();
    }
  });

  /** What the pages threw: checked as each test closes its pages. */
  const pageErrors: string[] = [];
  const closePage = async (page: Page) => {
    await page.close();
    assert.deepEqual(pageErrors.splice(0), [], 'the page threw');
  };

  const openPage = async (url: string, options: { width?: number; dark?: boolean } = {}): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: options.width ?? 1280, height: 900 }, colorScheme: options.dark ? 'dark' : 'light' });
    page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
    await page.goto(url);
    return page;
  };

  test("the overview lists the models, with the broken model's reason", async () => {
    const page = await openPage(`${open.url}/dashboard/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    for (const name of ['fashion_mnist', 'simple', 'broken']) await page.locator(`tr[data-model="${name}"]`).waitFor();
    assert.equal(await page.locator('tr[data-model="fashion_mnist"] [data-testid="state"]').textContent(), 'READY');
    assert.equal(await page.locator('tr[data-model="broken"] [data-testid="state"]').textContent(), 'UNAVAILABLE');
    const reason = (await json(`${open.url}/dashboard/api/overview`)).models.find((model: Json) => model.name === 'broken').versions[0].reason;
    assert.equal(await page.locator('tr[data-model="broken"] [data-testid="reason"]').textContent(), reason);
    await page.locator('[data-testid="cpu"] .card-value', { hasText: '%' }).waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'overview.png') });
    await closePage(page);
    const phone = await openPage(`${open.url}/dashboard/`, { width: 390, dark: true });
    await phone.locator('tr[data-model="broken"]').waitFor();
    await phone.screenshot({ path: join(SCREENSHOTS, 'overview-phone-dark.png'), fullPage: true });
    await closePage(phone);
  });

  test("traffic moves the model page's numbers to what /stats reports", async () => {
    const page = await openPage(`${open.url}/dashboard/#/model/fashion_mnist/1`);
    await page.locator('[data-testid="requests"] .card-value').waitFor();
    for (let round = 0; round < 4; round += 1) await classify(6);
    const stats = (await json(`${open.url}/v2/models/fashion_mnist/versions/1/stats`)).model_stats[0];
    const shown = (count: number) => count.toLocaleString('en-US');
    await page.locator('[data-testid="requests"] .card-value', { hasText: new RegExp(`^${shown(stats.inference_stats.success.count)}$`) }).waitFor();
    await page.locator('[data-testid="inferences"] .card-value', { hasText: new RegExp(`^${shown(stats.inference_count)}$`) }).waitFor();
    await page.locator('[data-testid="executions"] .card-value', { hasText: new RegExp(`^${shown(stats.execution_count)}$`) }).waitFor();
    assert.match((await page.locator('[data-testid="cost"] .card-value').textContent()) ?? '', /^\$\d/);
    const monitor = await json(`${open.url}/v2/models/fashion_mnist/versions/1/monitor`);
    await page.locator('[data-testid="drift"] .card-value', { hasText: monitor.state.replace('_', ' ') }).waitFor();
    // The monitor's confidence histogram counted every computed prediction, as nereid_prediction_confidence does.
    const confidence = (await json(`${open.url}/dashboard/api/overview`)).models.find((model: Json) => model.name === 'fashion_mnist').versions[0].confidence;
    await page.locator('[data-testid="confidence-histogram"] figcaption', { hasText: `of ${confidence.count} predictions` }).waitFor();
    assert.equal(await page.locator('[data-testid="confidence-histogram"] .column').count(), confidence.le.length);
    // The charts have drawn the interval in which the traffic arrived.
    await page.waitForFunction(() => document.querySelectorAll('.chart canvas').length === 6);
    await page.screenshot({ path: join(SCREENSHOTS, 'model.png'), fullPage: true });
    await closePage(page);
    const phone = await openPage(`${open.url}/dashboard/#/model/fashion_mnist/1`, { width: 390, dark: true });
    await phone.locator('[data-testid="confidence-histogram"]').waitFor();
    await phone.screenshot({ path: join(SCREENSHOTS, 'model-phone-dark.png'), fullPage: true });
    await closePage(phone);
  });

  test('the try-it panel classifies a photo and shows its label and confidence, and sends a pasted V2 request', async () => {
    const expected = (await classify(1))[0];
    const page = await openPage(`${open.url}/dashboard/#/try/fashion_mnist`);
    await page.locator('#try-model option[value="fashion_mnist"]').waitFor({ state: 'attached' });
    await page.locator('#try-file:enabled').waitFor();
    await page.setInputFiles('#try-file', join(imagesDir, '0.png'));
    const top = page.locator('[data-testid="label"]').first();
    await top.waitFor();
    assert.equal(await top.locator('.label-name').textContent(), expected.predictions[0].label);
    assert.ok(LABELS.includes(expected.predictions[0].label));
    assert.equal(await top.locator('[data-testid="confidence"]').textContent(), `${(expected.predictions[0].score * 100).toFixed(1)} %`);
    await page.screenshot({ path: join(SCREENSHOTS, 'try-it.png') });
    // A model that takes tensors: a pasted V2 request goes to /infer and its answer is shown.
    await page.selectOption('#try-model', 'simple');
    await page.locator('#try-file:disabled').waitFor();
    await page.click('[data-tab="json"]');
    await page.fill('#try-json', simpleRequest);
    await page.click('#try-send');
    const answer = JSON.parse((await page.locator('#try-answer pre').textContent()) ?? '{}');
    assert.deepEqual(answer.outputs.find((output: Json) => output.name === 'OUTPUT0').data, Array.from({ length: 16 }, (_, i) => i + 1));
    await closePage(page);
  });

  test('with a token set, the dashboard asks for it and then shows the models', async () => {
    const page = await openPage(`${guarded.url}/dashboard/`);
    await page.locator('#token-dialog[open]').waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'token.png') });
    await page.fill('#token-input', MANAGEMENT_TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.locator('tr[data-model="simple"]').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nereid-dashboard-token')), MANAGEMENT_TOKEN);
    await closePage(page);
  });
});
