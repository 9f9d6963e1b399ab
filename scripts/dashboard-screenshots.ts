/**
 * The screenshots of docs/dashboard.md: a real server (the bundled Fashion-MNIST model, a canary
 * with a shadow version, a broken model, a handler with the OCR pipeline's outputs) under about a
 * minute of mixed traffic, its dashboard open in headless Chromium the whole time so that the
 * charts have history, following a Redis queue with two finished batch jobs (redis-server must be
 * installed); then each page saved as a small palette PNG.
 * Run: node --import tsx scripts/dashboard-screenshots.ts [seconds]
 */
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import sharp from 'sharp';
import { PrometheusMetrics } from '../src/observability/index.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { batchJobsSource } from '../src/jobs/index.js';
import { runDashboardJobs, TEXT_LINES, writeTextLinesModel } from '../test/support/dashboard-fixtures.js';
import { writeFashionMnistPngs } from '../test/support/fashion-mnist.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { startTestServer, writeSimpleModel } from '../test/support/test-server.js';

const OUT = join(process.cwd(), 'docs', 'dashboard');
const SECONDS = Number(process.argv[2] ?? 60);
const IMAGES = 24;

const repoDir = await mkdtemp(join(tmpdir(), 'nereid-dashboard-shots-'));
const imagesDir = `${repoDir}-images`;
await cp(join(process.cwd(), 'models', 'fashion_mnist'), join(repoDir, 'fashion_mnist'), { recursive: true });
await writeSimpleModel(repoDir);
const canaryConfig = 'max_batch_size: 8\nversion_policy: { all: {} }\ntraffic: { weights: { "1": 90, "2": 10 }, shadow: { version: 3, max_in_flight: 4 } }\n';
await writeModel(repoDir, 'canary', 1, scaleModel(2), undefined, { 'config.yaml': canaryConfig });
await writeModel(repoDir, 'canary', 2, scaleModel(2));
await writeModel(repoDir, 'canary', 3, scaleModel(3));
await writeModel(repoDir, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
await writeTextLinesModel(repoDir);
await writeFashionMnistPngs(imagesDir, 't10k', IMAGES);
// An image whose text sits where text_lines says its lines are.
const [textWidth, textHeight] = [560, 240];
const textImage = join(imagesDir, 'text.png');
const lines = TEXT_LINES.map(({ text, x: [x0, x1], y: [y0, y1] }) => {
  // As large as the box allows, by its height and by its width (a character is about 0.55 of the font size wide).
  const size = Math.min((y1 - y0) * textHeight * 0.75, ((x1 - x0) * textWidth) / (text.length * 0.55));
  return `<text x="${x0 * textWidth + 4}" y="${y1 * textHeight - (y1 - y0) * textHeight * 0.22}" font-size="${size.toFixed(1)}" font-family="DejaVu Sans, sans-serif">${text}</text>`;
});
await sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${textWidth}" height="${textHeight}"><rect width="100%" height="100%" fill="#f4efe4"/>${lines.join('')}</svg>`))
  .png()
  .toFile(textImage);
const redis = await startRedisServer();
const queue = `redis://127.0.0.1:${redis.port}`;
const jobs = await runDashboardJobs(queue, repoDir);
const images = await Promise.all(Array.from({ length: IMAGES }, (_, index) => readFile(join(imagesDir, `${index}.png`))));

const metrics = new PrometheusMetrics({ processMetrics: false, usdPerCoreHour: 0.048 });
const server = await startTestServer({
  repoDir,
  server: { observers: [metrics.observer], costPerCoreHour: 0.048, allowCodeModels: true },
  http: { dashboardHistograms: (model, version) => metrics.histogramSnapshot(model, version), dashboardJobs: batchJobsSource({ queue }) },
});
metrics.attach(server.server);
const guarded = await startTestServer({ models: writeSimpleModel, http: { authTokens: ['a-token'] } });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox'] });

const open = async (path: string, options: { width?: number; height?: number; dark?: boolean; base?: string } = {}): Promise<Page> => {
  const page = await browser.newPage({ viewport: { width: options.width ?? 1280, height: options.height ?? 860 }, colorScheme: options.dark ? 'dark' : 'light' });
  await page.goto(`${options.base ?? server.url}/dashboard/${path}`);
  return page;
};
/** Saves a screenshot re-encoded with a palette: a fraction of the size, and these pages have few colours. */
const save = async (page: Page, name: string, fullPage = false) => {
  const png = await page.screenshot({ fullPage });
  const file = join(OUT, name);
  await sharp(png).png({ palette: true, quality: 90, effort: 10 }).toFile(file);
  const { size } = await import('node:fs').then((fs) => fs.statSync(file));
  console.log(`${file}: ${Math.round(size / 1024)} KiB`);
};

const post = (path: string, body: BodyInit, type: string) => fetch(`${server.url}${path}`, { method: 'POST', body, headers: { 'content-type': type } }).then((response) => response.arrayBuffer());
const vector = (values: number[]) => JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, values.length], datatype: 'FP32', data: values }] });
const simple = (shape: number) =>
  JSON.stringify({
    inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, shape: [1, shape], datatype: 'INT32', data: Array.from({ length: shape }, (_, i) => i) })),
  });

try {
  await mkdir(OUT, { recursive: true });
  const overview = await open('');
  const model = await open('#/model/fashion_mnist/1', { height: 1400 });
  const canary = await open('#/model/canary/1', { height: 1400 });
  // Traffic keeps flowing while the pages are saved, so that their "now" figures are not an idle second's.
  let stopped = false;
  let tick = 0;
  const traffic = (async () => {
    while (!stopped) {
      tick += 1;
      // A load that rises and falls, so that the charts have a shape.
      const burst = 1 + Math.round(6 * (1 + Math.sin(tick / 25)));
      await Promise.all([
        ...Array.from({ length: burst }, (_, index) => post('/v2/models/fashion_mnist/classify', images[(tick + index) % IMAGES], 'image/png')),
        post('/v2/models/canary/infer', vector([tick % 7, 1, 2, 3]), 'application/json'),
        post('/v2/models/simple/infer', simple(tick % 40 === 0 ? 15 : 16), 'application/json'), // a wrong shape now and then: INVALID_ARG
      ]);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  await save(overview, 'overview.png');
  await save(model, 'model.png', true);
  await save(canary, 'model-canary.png', true);
  stopped = true;
  await traffic;

  const phone = await open('', { width: 390, height: 844, dark: true });
  await phone.locator('tr[data-model="broken"]').waitFor();
  await phone.waitForTimeout(1500);
  await save(phone, 'overview-phone-dark.png');

  const tryIt = await open('#/try/fashion_mnist');
  await tryIt.locator('#try-file:enabled').waitFor();
  await tryIt.setInputFiles('#try-file', join(imagesDir, '0.png'));
  await tryIt.locator('[data-testid="label"]').first().waitFor();
  await save(tryIt, 'try-it.png');

  const textTry = await open('#/try/text_lines');
  await textTry.locator('#try-mode option[value="text"]:checked').waitFor({ state: 'attached' });
  await textTry.setInputFiles('#try-file', textImage);
  await textTry.locator('[data-testid="text-line"]').first().waitFor();
  await save(textTry, 'try-it-text.png');

  const jobsPage = await open('#/jobs');
  await jobsPage.locator('section[data-job="dashboard-ghost"]').waitFor();
  await save(jobsPage, 'jobs.png', true);

  const token = await open('', { base: guarded.url });
  await token.locator('#token-dialog[open]').waitFor();
  await save(token, 'token.png');
} finally {
  await browser.close();
  await server.close();
  await guarded.close();
  await jobs.close();
  await redis.stop();
  await rm(repoDir, { recursive: true, force: true });
  await rm(imagesDir, { recursive: true, force: true });
}
