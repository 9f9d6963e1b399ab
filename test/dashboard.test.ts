/**
 * The web dashboard against a real server (the bundled Fashion-MNIST model, a generated one and a
 * broken one): its JSON/SSE API gives the numbers /v2/models/stats gives, and in headless Chromium
 * (Debian's, driven by playwright-core) the pages show them, the try-it panel classifies a photo,
 * an unavailable model shows its reason and a server with tokens asks for one. Screenshots of each
 * page go to .scratch/dashboard/ for a person to look at.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import sharp from 'sharp';
import { intervalOf, quantileBetween, type DashboardSnapshot } from '../src/frontends/http/dashboard-data.js';
import { JOBS_HINT } from '../src/frontends/http/dashboard-http.js';
import { createHttpFrontEnd, dashboardAddress } from '../src/frontends/http/v2-http.js';
import { batchJobsSource, batchJobStatus } from '../src/jobs/index.js';
import { PrometheusMetrics } from '../src/observability/index.js';
import { writeModel } from '../src/onnx/test-models.js';
import { readFashionMnist, writeFashionMnistPngs } from './support/fashion-mnist.js';
import { runDashboardJobs, TEXT_LINES, writeTextLinesModel } from './support/dashboard-fixtures.js';
import { startRedisServer } from './support/redis-server.js';
import { until } from './support/checks.js';
import { openDashboardStream } from './support/dashboard-stream.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

type Json = Record<string, any>;

/**
 * Where the pages' screenshots go for a person to look at, when NEREID_DASHBOARD_SCREENSHOTS is set: nothing asserts on
 * them, and each costs the browser an image encode, so the suite takes none.
 */
const SCREENSHOTS = process.env.NEREID_DASHBOARD_SCREENSHOTS ? join(process.cwd(), '.scratch', 'dashboard') : undefined;

/** Saves `target` as `name` when screenshots were asked for; an element is waited for either way, as its screenshot would. */
async function screenshot(target: Page | Locator, name: string, options: { fullPage?: boolean } = {}): Promise<void> {
  const page = 'goto' in target;
  if (!SCREENSHOTS) return page ? undefined : target.waitFor();
  await (page ? target.screenshot({ path: join(SCREENSHOTS, name), ...options }) : target.screenshot({ path: join(SCREENSHOTS, name) }));
}
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MANAGEMENT_TOKEN = 'dashboard-management-token';
const INFERENCE_TOKEN = 'dashboard-inference-token';
/** The browser's log of the 401 (no token) or 403 (a token of another scope) that makes a page ask for a token. */
const TOKEN_ASKED = /status of (?:401 \(Unauthorized\)|403 \(Forbidden\)) \(.*\/dashboard\/api\/stream\)$/;
/**
 * The open server's stream interval: short, so that a test waiting for the next snapshot waits little; each test waits
 * for the snapshot that shows what it needs, never for a number of events.
 */
const STREAM_INTERVAL_MS = 200;
const LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

async function writeRepository(dir: string): Promise<void> {
  await cp(join(process.cwd(), 'models', 'fashion_mnist'), join(dir, 'fashion_mnist'), { recursive: true });
  await writeSimpleModel(dir);
  await writeModel(dir, 'broken', 1, new TextEncoder().encode('not an ONNX model'));
  await writeTextLinesModel(dir);
}

/** A histogram's cumulative bucket counts as /metrics exposes them, by upper bound. */
function metricBuckets(text: string, name: string, model: string): number[] {
  const pattern = new RegExp(`^${name}_bucket\\{model="${model}",version="1",le="([^"]+)"\\} (\\d+)$`, 'gm');
  return [...text.matchAll(pattern)].filter((match) => match[1] !== '+Inf').map((match) => Number(match[2]));
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

describe('dashboard', () => {
  let repoDir: string;
  let imagesDir: string;
  let open: TestServer;
  let guarded: TestServer;
  let browser: Browser;
  let metrics: PrometheusMetrics;

  before(async () => {
    repoDir = await mkdtemp(join(tmpdir(), 'nereid-dashboard-'));
    imagesDir = join(repoDir, '..', `${repoDir.split('/').pop()}-images`);
    await writeRepository(repoDir);
    await writeFashionMnistPngs(imagesDir, 't10k', 2);
    if (SCREENSHOTS) await mkdir(SCREENSHOTS, { recursive: true });
    metrics = new PrometheusMetrics({ processMetrics: false, usdPerCoreHour: 0.05 });
    open = await startTestServer({
      repoDir,
      server: { observers: [metrics.observer], costPerCoreHour: 0.05, allowCodeModels: true },
      http: { dashboardHistograms: (model, version) => metrics.histogramSnapshot(model, version), dashboardIntervalMs: STREAM_INTERVAL_MS },
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
    assert.deepEqual(fashion.image_routes, { classify: true, detect: false });
    assert.equal(fashion.monitor.monitored, true, 'the bundled model has a reference profile: /monitor answers');
    assert.equal(fashion.histograms.request.count, 2, 'the metrics histograms saw the two classify requests');
    assert.equal(fashion.stats.cost.usd_per_core_hour, 0.05);
    assert.ok(overview.server.rss_bytes > 0 && overview.server.uptime_s > 0 && overview.server.cpu_s > 0);
  });

  test('the stream sends a snapshot as it opens, then one an interval with what happened since the one before', async () => {
    const stream = await openDashboardStream(`${open.url}/dashboard/api/stream`);
    try {
      const first = await stream.next();
      assert.equal(first.interval, undefined, 'the first event has nothing to compare with');
      const counted = (event: Json) => event.snapshot.models.find((model: Json) => model.name === 'simple').versions[0].stats.inference_stats.success.count;
      await infer(5);
      // The requests may straddle several intervals: the event that counts the last of them, and the one before it.
      let [before, last] = [first, await stream.next()];
      while (counted(last) < counted(first) + 5) [before, last] = [last, await stream.next()];
      const simple = last.interval.versions['simple/1'];
      assert.equal(Math.round(simple.requests_per_s * last.interval.seconds), counted(last) - counted(before));
      assert.ok(simple.requests_per_s > 0);
      assert.ok(simple.percentiles.request.p50 > 0 && simple.percentiles.request.p50 <= simple.percentiles.request.p99);
      assert.ok(simple.mean_ms.compute_infer > 0);
    } finally {
      stream.close();
    }
  });

  test('counters that started again between two snapshots are read from zero, though they then passed the old ones; a reload that keeps them counting is read on', async () => {
    const overview = async () => (await json(`${open.url}/dashboard/api/overview`)) as DashboardSnapshot;
    const statsOf = (snapshot: DashboardSnapshot) => snapshot.models.find((model) => model.name === 'simple')!.versions[0].stats!;
    const requestsBetween = (before: DashboardSnapshot, after: DashboardSnapshot) => {
      const interval = intervalOf(before, after);
      return Math.round(interval.versions['simple/1'].requests_per_s * interval.seconds);
    };
    await infer(1);
    const first = await overview();
    await open.server.repository.load('simple');
    await infer(1);
    const reloaded = await overview();
    assert.equal(statsOf(reloaded).counting_since, statsOf(first).counting_since);
    assert.equal(requestsBetween(first, reloaded), 1);

    // Version 1 leaves the model (its folder served as version 2 for a load), then comes back with counters from 0.
    const [one, two] = [join(repoDir, 'simple', '1'), join(repoDir, 'simple', '2')];
    await rename(one, two);
    try {
      await open.server.repository.load('simple');
    } finally {
      await rename(two, one);
    }
    await open.server.repository.load('simple');
    const more = statsOf(reloaded).inference_stats.success.count + 2;
    await infer(more);
    const restarted = await overview();
    assert.notEqual(statsOf(restarted).counting_since, statsOf(reloaded).counting_since);
    assert.equal(statsOf(restarted).inference_stats.success.count, more);
    assert.equal(requestsBetween(reloaded, restarted), more, 'every request of the new counters, not the difference from the old ones');
    const simple = intervalOf(reloaded, restarted).versions['simple/1'];
    for (const [name, value] of Object.entries({ ...simple, ...simple.mean_ms })) if (typeof value === 'number') assert.ok(value >= 0, `${name} ${value}`);
  });

  test('the stream interval is bounded: outside 100 ms to 60 s, createHttpFrontEnd refuses it, naming the option and the range', () => {
    assert.throws(() => createHttpFrontEnd(open.server, { dashboardIntervalMs: 99 }), /option 'dashboardIntervalMs' expects number to be >=100, got 99$/);
    assert.throws(() => createHttpFrontEnd(open.server, { dashboardIntervalMs: 60_001 }), /option 'dashboardIntervalMs' expects number to be <=60000, got 60001$/);
  });

  test('streams are bounded: past 64 open at once a new one is refused with 503 and Retry-After', async () => {
    const opened = await Promise.all(Array.from({ length: 64 }, () => openDashboardStream(`${open.url}/dashboard/api/stream`)));
    try {
      const refused = await fetch(`${open.url}/dashboard/api/stream`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '10');
      assert.match(((await refused.json()) as { error: string }).error, /^64 dashboard streams are open already, the most this server keeps/);
    } finally {
      for (const stream of opened) stream.close();
      // The server frees a stream's place when it notices its connection closed, which a loaded machine may do late.
      await until('the 64 closed streams are let go', async () => {
        const probe = await fetch(`${open.url}/dashboard/api/stream`, { signal: AbortSignal.timeout(5000) });
        await probe.body?.cancel();
        return probe.status === 200;
      });
    }
  });

  test("each phase's percentiles come from the histograms /metrics exposes, bucket for bucket", async () => {
    const stream = await openDashboardStream(`${open.url}/dashboard/api/stream`);
    try {
      await stream.next();
      await classify(6);
      const answered = (await json(`${open.url}/v2/models/fashion_mnist/versions/1/stats`)).model_stats[0].inference_stats.success.count;
      const fashionOf = (event: Json) => event.snapshot.models.find((model: Json) => model.name === 'fashion_mnist').versions[0];
      // The events up to the first that saw every request (the traffic may straddle a tick).
      const events: Json[] = [];
      while (!events.length || fashionOf(events.at(-1)!).stats.inference_stats.success.count < answered) events.push(await stream.next());
      const text = await metrics.metrics(); // no traffic since the last event's snapshot
      const fashion = fashionOf(events.at(-1)!);
      const names = { request: 'request', queue: 'queue', preprocess: 'preprocess', compute_infer: 'compute_infer', postprocess: 'postprocess' } as const;
      for (const [histogram, metric] of Object.entries(names)) {
        assert.deepEqual(fashion.histograms[histogram].cumulative, metricBuckets(text, `nereid_inference_${metric}_duration_seconds`, 'fashion_mnist'), `${histogram}: the dashboard's buckets are /metrics'`);
        const shown = events.map((event) => event.interval.versions['fashion_mnist/1'].percentiles[histogram]).find(Boolean);
        assert.ok(shown && shown.p50 > 0 && shown.p50 <= shown.p95 && shown.p95 <= shown.p99, `${histogram}: p50 ≤ p95 ≤ p99 over an interval with traffic (${JSON.stringify(shown)})`);
      }
      const stats = (await json(`${open.url}/v2/models/fashion_mnist/versions/1/stats`)).model_stats[0];
      assert.equal(fashion.histograms.preprocess.count, stats.inference_stats.preprocess.count, 'one observation per pre-processed request, as /stats counts them');
    } finally {
      stream.close();
    }
  });

  test('a draining server ends its streams, so that they do not hold the drain', async () => {
    const draining = await startTestServer({ models: writeSimpleModel });
    try {
      const stream = await openDashboardStream(`${draining.url}/dashboard/api/stream`);
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
    assert.equal((await fetch(`${guarded.url}/dashboard/api/overview`, { headers: { authorization: `Bearer ${INFERENCE_TOKEN}` } })).status, 403);
    assert.equal((await fetch(`${guarded.url}/dashboard/api/overview`, { headers: { authorization: `Bearer ${MANAGEMENT_TOKEN}` } })).status, 200);
    assert.equal((await fetch(`${guarded.url}/dashboard/assets/..%2f..%2fpackage.json`)).status, 404, 'only the listed files are served');
  });

  test('a name of an Object.prototype member is no dashboard file: 404, and a long name is quoted to 80 characters', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const response = await fetch(`${guarded.url}/dashboard/assets/${name}`);
      assert.equal(response.status, 404, name);
      assert.match(((await response.json()) as { error: string }).error, new RegExp(`^no dashboard file '${name}' \\(files: index\\.html,`), name);
    }
    const response = await fetch(`${guarded.url}/dashboard/assets/${'x'.repeat(1000)}`);
    assert.equal(response.status, 404);
    assert.match(((await response.json()) as { error: string }).error, new RegExp(`^no dashboard file '${'x'.repeat(80)}…' \\(files:`));
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

  test('--dashboard-port serves the dashboard and the routes its pages call on a port of its own, behind the same tokens', async () => {
    const own = await startTestServer({ models: writeSimpleModel, http: { dashboardPort: 0, authTokens: { management: [MANAGEMENT_TOKEN], inference: [INFERENCE_TOKEN] } } });
    const dashboard = dashboardAddress(own.app)!;
    try {
      assert.match(dashboard, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(dashboard, own.url);
      const management = { authorization: `Bearer ${MANAGEMENT_TOKEN}` };
      const inference = { authorization: `Bearer ${INFERENCE_TOKEN}` };
      assert.equal((await fetch(`${dashboard}/dashboard/`)).status, 200);
      assert.equal((await fetch(`${dashboard}/`, { redirect: 'manual' })).headers.get('location'), '/dashboard/');
      assert.equal((await fetch(`${dashboard}/dashboard/api/overview`)).status, 401, 'the same tokens');
      assert.equal((await fetch(`${dashboard}/dashboard/api/overview`, { headers: management })).status, 200);
      // The try-it panel's calls, under the inference scope as on the HTTP port.
      assert.equal((await fetch(`${dashboard}/v2/models/simple/config`, { headers: inference })).status, 200);
      const answer = await json(`${dashboard}/v2/models/simple/infer`, { method: 'POST', body: simpleRequest, headers: { ...inference, 'content-type': 'application/json' } });
      assert.deepEqual(answer.outputs.find((output: Json) => output.name === 'OUTPUT0').data, Array.from({ length: 16 }, (_, i) => i + 1));
      // Everything else stays on the HTTP port, and the dashboard leaves it.
      const elsewhere = await fetch(`${dashboard}/v2/repository/index`, { method: 'POST', headers: management });
      assert.equal(elsewhere.status, 404);
      assert.match(((await elsewhere.json()) as Json).error, /dashboard's port/);
      const moved = await fetch(`${own.url}/dashboard/api/overview`, { headers: management });
      assert.equal(moved.status, 404);
      assert.match(((await moved.json()) as Json).error, new RegExp(`its own port \\(--dashboard-port: ${dashboard}/dashboard/\\)`));
      assert.equal((await fetch(`${own.url}/v2/models/simple/config`, { headers: inference })).status, 200);
      assert.equal((await json(`${own.url}/`, { headers: inference })).links.dashboard, undefined);
      // A page opened on that port reads its data there.
      const page = await openPage(`${dashboard}/dashboard/`, { expectedErrors: TOKEN_ASKED });
      await page.locator('#token-dialog[open]').waitFor();
      await page.fill('#token-input', MANAGEMENT_TOKEN);
      await page.click('#token-form button[type="submit"]');
      await page.locator('tr[data-model="simple"]').waitFor();
      await closePage(page);
    } finally {
      await own.close();
    }
    await assert.rejects(fetch(`${dashboard}/dashboard/`), 'the port closed with the front end');
  });

  test('a dashboard port already taken fails the front end\'s listen, saying which port', async () => {
    // Any listener takes the port: a bare socket server, not a second Nereid.
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const taken = (holder.address() as AddressInfo).port;
      await assert.rejects(startTestServer({ models: writeSimpleModel, http: { dashboardPort: taken } }), new RegExp(`dashboard's port 127\\.0\\.0\\.1:${taken} \\(--dashboard-port\\) cannot be bound: .*EADDRINUSE`));
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  /**
   * What the pages threw and the errors they logged to the console (a failed request, a resource the
   * Content-Security-Policy blocked): checked as each test closes its pages. A page that is meant to
   * meet an error status (the token prompt's 401, a refused upload's 400) names it in `expectedErrors`.
   */
  const pageErrors: string[] = [];
  const closePage = async (page: Page) => {
    await page.close();
    assert.deepEqual(pageErrors.splice(0), [], 'the page threw or logged an error');
  };

  const openPage = async (url: string, options: { width?: number; dark?: boolean; expectedErrors?: RegExp } = {}): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: options.width ?? 1280, height: 900 }, colorScheme: options.dark ? 'dark' : 'light' });
    page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
    page.on('console', (message) => {
      const logged = `${message.text()} (${message.location().url})`;
      if (message.type() === 'error' && !options.expectedErrors?.test(logged)) pageErrors.push(`${page.url()}: console error: ${logged}`);
    });
    await page.goto(url);
    return page;
  };

  test('the overview counts the failed requests of each version beside the answered ones, so that a model whose every request fails stands out', async () => {
    // Every request to this version fails: a wrong shape.
    const wrong = JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, 3], datatype: 'INT32', data: [1, 2, 3] }, { name: 'INPUT1', shape: [1, 3], datatype: 'INT32', data: [1, 2, 3] }] });
    for (let i = 0; i < 2; i++) await fetch(`${open.url}/v2/models/simple/infer`, { method: 'POST', body: wrong, headers: { 'content-type': 'application/json' } });
    const stats = (await json(`${open.url}/v2/models/simple/stats`)).model_stats[0].inference_stats;
    assert.ok(stats.fail.count >= 2, `the refused requests count as failures: ${JSON.stringify(stats.fail)}`);
    const page = await openPage(`${open.url}/dashboard/`);
    const cell = page.locator('tr[data-model="simple"] td[data-testid="failures"]');
    await cell.waitFor();
    assert.equal(Number((await cell.textContent())!.replace(/,/g, '')), stats.fail.count);
    assert.equal(await cell.getAttribute('class'), 'num failing');
    assert.equal(await page.locator('tr[data-model="fashion_mnist"] td[data-testid="failures"]').textContent(), '0');
    await closePage(page);
  });

  test('a link of the overview keeps the keyboard focus across the redraws of each snapshot, so that tabbing on goes to the next one', async () => {
    const page = await openPage(`${open.url}/dashboard/`);
    const link = (model: string) => page.locator(`tr[data-model="${model}"] a`);
    await link('fashion_mnist').waitFor();
    await link('fashion_mnist').focus();
    // Mark the row drawn now, then wait for the next snapshot to draw the table again.
    await page.evaluate(() => ((document.querySelector('tr[data-model="fashion_mnist"]') as HTMLElement).dataset.drawn = 'before'));
    await page.waitForFunction(() => (document.querySelector('tr[data-model="fashion_mnist"]') as HTMLElement).dataset.drawn === undefined);
    const focused = () => page.evaluate(() => `${document.activeElement?.closest('tr')?.dataset.model ?? ''} ${document.activeElement?.tagName}`);
    assert.equal(await focused(), 'fashion_mnist A', 'the redrawn link of the same model has the focus');
    await page.keyboard.press('Tab');
    const next = await page.evaluate(() => [...document.querySelectorAll('#models a')].map((a) => a.closest('tr')!.dataset.model));
    assert.equal(await focused(), `${next[next.indexOf('fashion_mnist') + 1]} A`, 'Tab goes on to the next model');
    await closePage(page);
  });

  test('eight tabs of one browser all go live: they share one stream (a browser opens six connections to a server), and when the tab reading it closes another takes over', async () => {
    const context = await browser.newContext();
    const errors: string[] = [];
    try {
      // The tabs open together, as a browser restoring a session opens them; each then waits to go live on its own.
      // Which of them reads the stream is seen from their requests.
      const streamReaders: Page[] = [];
      const pages = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const page = await context.newPage();
          page.on('pageerror', (error) => errors.push(error.message));
          page.on('request', (request) => {
            if (new URL(request.url()).pathname === '/dashboard/api/stream' && !streamReaders.includes(page)) streamReaders.push(page);
          });
          await page.goto(`${open.url}/dashboard/`);
          return page;
        }),
      );
      await Promise.all(
        pages.map(async (page) => {
          await page.locator('#connection[data-state="live"]').waitFor({ timeout: 10_000 });
          await page.locator('tr[data-model="simple"]').waitFor({ timeout: 10_000 });
        }),
      );
      // Each tab redraws on the next snapshot; then the tab that took the stream closes.
      const redrawn = async (page: Page) => {
        await page.evaluate(() => ((document.querySelector('tr[data-model="simple"]') as HTMLElement).dataset.drawn = 'before'));
        await page.waitForFunction(() => (document.querySelector('tr[data-model="simple"]') as HTMLElement).dataset.drawn === undefined, undefined, { timeout: 10_000 });
      };
      await Promise.all(pages.map(redrawn));
      assert.equal(streamReaders.length, 1, 'one tab reads the stream for all eight');
      const reader = streamReaders[0]!;
      pages.splice(pages.indexOf(reader), 1);
      await reader.close();
      await Promise.all(pages.map(redrawn));
      assert.equal(streamReaders.length, 2, 'another tab took the stream over');
      assert.ok(pages.includes(streamReaders[1]!));
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test("the overview lists the models, with the broken model's reason", async () => {
    const page = await openPage(`${open.url}/dashboard/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    for (const name of ['fashion_mnist', 'simple', 'broken']) await page.locator(`tr[data-model="${name}"]`).waitFor();
    assert.equal(await page.locator('tr[data-model="fashion_mnist"] [data-testid="state"]').textContent(), 'READY');
    assert.equal(await page.locator('tr[data-model="broken"] [data-testid="state"]').textContent(), 'UNAVAILABLE');
    const reason = (await json(`${open.url}/dashboard/api/overview`)).models.find((model: Json) => model.name === 'broken').versions[0].reason;
    assert.equal(await page.locator('tr[data-model="broken"] [data-testid="reason"]').textContent(), reason);
    await page.locator('[data-testid="cpu"] .card-value', { hasText: '%' }).waitFor();
    // The icon travels in the page: a page without one makes the browser ask the server for /favicon.ico,
    // a 404 in every page's console. It must also load under the page's Content-Security-Policy.
    const iconScheme = await page.evaluate(async () => {
      const href = document.querySelector<HTMLLinkElement>('link[rel="icon"]')!.href;
      const image = new Image();
      image.src = href;
      await image.decode();
      return new URL(href).protocol;
    });
    assert.equal(iconScheme, 'data:');
    await screenshot(page, 'overview.png');
    await closePage(page);
    const phone = await openPage(`${open.url}/dashboard/`, { width: 390, dark: true });
    await phone.locator('tr[data-model="broken"]').waitFor();
    await phone.locator('tr[data-model="fashion_mnist"] td[data-testid="drift"] .level').waitFor();
    // Six columns do not fit: the header row gives way to a label before each value, which must be its own column's
    // header (rows laid out apart from the header row put the values one or two columns off their headers).
    // No named functions inside: tsx would wrap them in a helper the page has not got.
    const layout = await phone.evaluate(() => {
      const headers = [...document.querySelectorAll('table.models thead th')].map((th) => th.textContent);
      const cells = [...document.querySelectorAll('table.models tbody tr')].flatMap((tr) =>
        [...tr.children].filter((td) => td.getBoundingClientRect().width > 0).map((td) => ({
          model: (tr as HTMLElement).dataset.model,
          header: headers[[...tr.children].indexOf(td)],
          label: getComputedStyle(td, '::before').content,
          role: td.classList.contains('name') ? 'name' : td.classList.contains('state') ? 'state' : td.classList.contains('reason') ? 'reason' : 'value',
        })),
      );
      return { headerShown: document.querySelector('table.models thead tr')!.getBoundingClientRect().height > 0, cells };
    });
    assert.equal(layout.headerShown, false);
    const values = layout.cells.filter((cell) => cell.role === 'value');
    assert.deepEqual(new Set(values.map((cell) => cell.header)), new Set(['Version', 'req/s', 'Failures', 'Drift']), 'the essential columns');
    for (const cell of values) assert.equal(cell.label, `"${cell.header}"`, `${cell.model}: the value under ${cell.header} is labelled with it`);
    assert.deepEqual(new Set(layout.cells.filter((cell) => cell.role !== 'value').map((cell) => cell.header)), new Set(['Model', 'State', 'Reason']));
    await screenshot(phone, 'overview-phone-dark.png', { fullPage: true });
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
    await page.waitForFunction(() => document.querySelectorAll('.chart canvas').length === 9);
    // Latency by phase: a chart per phase the model has, and the latest p50/p95/p99 of each.
    for (const phase of ['queue', 'preprocess', 'compute', 'postprocess']) assert.equal(await page.locator(`[data-testid="phase-${phase}"]`).isVisible(), true, phase);
    for (const phase of ['request', 'queue', 'preprocess', 'compute', 'postprocess']) {
      await page.locator(`#phase-table tr[data-phase="${phase}"] td[data-q="p95"]`, { hasText: /\d/ }).waitFor();
    }
    await screenshot(page, 'model.png', { fullPage: true });
    await closePage(page);
    const phone = await openPage(`${open.url}/dashboard/#/model/fashion_mnist/1`, { width: 390, dark: true });
    await phone.locator('[data-testid="confidence-histogram"]').waitFor();
    await screenshot(phone, 'model-phone-dark.png', { fullPage: true });
    await closePage(phone);
  });

  test("the model page sets the realised accuracy beside the estimate over the same labelled rows, not the window's", async () => {
    // Labelled garments and unlabelled inverted ones: the window's estimate covers both, the realised
    // accuracy only the garments, so only the estimate over the labelled rows compares with it.
    const labelledCount = 30;
    const { pixels, labels } = await readFashionMnist('t10k', labelledCount);
    const png = (image: Uint8Array, negate: boolean) => {
      const decoded = sharp(image, { raw: { width: 28, height: 28, channels: 1 } });
      return (negate ? decoded.negate() : decoded).png().toBuffer();
    };
    const classifyMany = async (images: Buffer[], requestId?: string) => {
      const form = new FormData();
      images.forEach((image, index) => form.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), `${index}.png`));
      await json(`${open.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: form, headers: requestId ? { 'x-request-id': requestId } : {} });
    };
    await classifyMany(await Promise.all(pixels.map((image) => png(image, false))), 'labelled-garments');
    await classifyMany(await Promise.all(pixels.slice(0, 20).map((image) => png(image, true))));
    const feedback = await json(`${open.url}/v2/models/fashion_mnist/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ labels: labels.map((label, row) => ({ id: `labelled-garments/${row}`, label })) }),
    });
    assert.equal(feedback.accepted, labelledCount);
    const { accuracy } = await json(`${open.url}/v2/models/fashion_mnist/versions/1/monitor`);
    assert.equal(accuracy.labelled, labelledCount);
    assert.notEqual(accuracy.expected_on_labelled, accuracy.expected, 'the unlabelled inverted rows move the window estimate away from the labelled rows\' one');

    const page = await openPage(`${open.url}/dashboard/#/model/fashion_mnist/1`);
    const shown = (value: number) => `${(value * 100).toFixed(1)} %`;
    const labelledCard = page.locator('[data-testid="labelled-accuracy"]');
    await labelledCard.locator('.card-value', { hasText: shown(accuracy.realised) }).waitFor();
    assert.equal(await labelledCard.locator('.card-detail').textContent(), `realised on ${labelledCount} labelled rows; estimated ${shown(accuracy.expected_on_labelled)} on them`);
    const windowCard = page.locator('[data-testid="accuracy"]');
    assert.equal(await windowCard.locator('.card-value').textContent(), shown(accuracy.expected));
    // Twenty inverted garments in fifty rows: not an ok state, so the estimate is shown with the server's caution, not as a figure to trust.
    assert.match(accuracy.caution, /^the estimate assumes the model is as well calibrated as on its reference data/);
    assert.match(accuracy.caution, new RegExp(`: the accuracy realised on the ${labelledCount} labelled rows measures it$`), 'labels came back: not asked for again');
    assert.equal(await windowCard.locator('.card-detail').textContent(), accuracy.caution);
    assert.equal(await windowCard.getAttribute('data-level'), 'doubtful');
    // The drift card's score is the window's now; the state is from the last evaluation, whose score it names where they differ.
    const drifted = await json(`${open.url}/v2/models/fashion_mnist/versions/1/monitor`);
    const driftDetail = (await page.locator('[data-testid="drift"] .card-detail').textContent())!;
    assert.match(driftDetail, new RegExp(`^score [\\d.]+ now · ${drifted.window.rows} rows`));
    const differs = drifted.state_evaluation?.drift_score?.toFixed(3) !== drifted.drift_score?.toFixed(3);
    assert.equal(driftDetail.includes(' · the state is from the evaluation at '), differs, `${driftDetail} (${JSON.stringify(drifted.state_evaluation)})`);
    // Opened after the traffic: no second of its own to show, so the percentiles since load stand in, said as such.
    const requestRow = page.locator('#phase-table tr[data-phase="request"]');
    await requestRow.locator('td[data-q="measured"]', { hasText: /^since load$/ }).waitFor();
    // The page writes numbers in the browser's locale: a p99 of a second or more reads "1,234.5" on a busy machine.
    const [p50, p99] = await Promise.all(['p50', 'p99'].map(async (q) => Number((await requestRow.locator(`td[data-q="${q}"]`).textContent())?.replace(/,/g, ''))));
    assert.ok(p50 > 0 && p99 >= p50, `since-load percentiles read p50 ${p50}, p99 ${p99}`);
    // Rows executed per execution, from batch_stats (inference_count leaves out the rows of refused requests).
    const batches = (await json(`${open.url}/v2/models/fashion_mnist/versions/1/stats`)).model_stats[0].batch_stats as Json[];
    const executed = batches.reduce((sum, batch) => sum + batch.compute_infer.count, 0);
    const meanBatch = batches.reduce((sum, batch) => sum + batch.batch_size * batch.compute_infer.count, 0) / executed;
    const batchDetail = (await page.locator('[data-testid="executions"] .card-detail').textContent()) ?? '';
    assert.match(batchDetail, /^mean batch [\d.]+ since load$/);
    // To one decimal, as the browser rounds it (2.05 reads 2.1 there, where toFixed gives 2.0).
    assert.ok(Math.abs(Number(batchDetail.split(' ')[2]) - meanBatch) <= 0.05 + 1e-9, `${batchDetail}: ${meanBatch} rows per execution`);
    await screenshot(page.locator('#monitor-panel'), 'model-accuracy.png');
    await closePage(page);
    // The overview says it too: a model failing politely does not look healthy until someone opens its page.
    const monitor = await json(`${open.url}/v2/models/fashion_mnist/versions/1/monitor`);
    const overview = await openPage(`${open.url}/dashboard/`);
    const drift = overview.locator('tr[data-model="fashion_mnist"] td[data-testid="drift"]');
    await drift.locator(`.level[data-level="${monitor.state}"]`).waitFor();
    assert.equal(await drift.textContent(), `${monitor.state.replace('_', ' ')} ${(monitor.ood.share * 100).toFixed(1)} % OOD`);
    await closePage(overview);
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
    await screenshot(page, 'try-it.png');
    // A model that takes tensors: a pasted V2 request goes to /infer and its answer is shown.
    await page.selectOption('#try-model', 'simple');
    await page.locator('#try-file:disabled').waitFor();
    await page.click('[data-tab="json"]');
    await page.fill('#try-json', simpleRequest);
    await page.click('#try-send');
    const answer = JSON.parse((await page.locator('#try-answer pre').textContent()) ?? '{}');
    assert.deepEqual(answer.outputs.find((output: Json) => output.name === 'OUTPUT0').data, Array.from({ length: 16 }, (_, i) => i + 1));
    assert.match((await page.locator('#try-answer pre').textContent())!, /"data": \[1, 2, 3, .*, 16\]/, 'an array of numbers on one line');
    assert.equal(await page.locator('[data-testid="try-json-cut"]').count(), 0, 'nothing was cut');
    await closePage(page);
  });

  test("the try-it panel shows a large V2 answer's arrays cut to their first values, at once, with the whole answer to show or download", async () => {
    const page = await openPage(`${open.url}/dashboard/#/try/simple`);
    await page.click('[data-tab="json"]');
    await page.locator('#try-send:enabled').waitFor();
    // The answer OCR recognition gave a 320-pixel-wide zero image: 8 MB of numbers, which the page laid out one per line in 13.5 s.
    const values = (count: number) => JSON.stringify({ model_name: 'simple', model_version: '1', outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [1, count], data: Array.from({ length: count }, (_, i) => i / 3) }] });
    let body = values(800_000);
    await page.route('**/v2/models/simple/infer', (route) => route.fulfill({ status: 200, contentType: 'application/json', body }));
    await page.click('#try-send');
    const cut = page.locator('[data-testid="try-json-cut"]');
    await cut.waitFor();
    const text = (await page.locator('[data-testid="try-json-answer"]').textContent())!;
    assert.match(text, /"data": \[0, 0\.3333333333333333, .*, 21, … 799,936 more\]/);
    assert.ok(text.length < 3000, `${text.length} characters shown`);
    assert.equal(await cut.locator('button').count(), 0, 'too large to lay out: download only');
    const download = page.waitForEvent('download');
    await page.click('[data-testid="try-json-download"]');
    assert.equal(await (await download).suggestedFilename(), 'simple-answer.json');
    // A smaller one that was cut can be shown whole.
    body = values(1000);
    await page.click('#try-send');
    await page.locator('[data-testid="try-json-all"]').click();
    await cut.waitFor({ state: 'detached' });
    assert.deepEqual(JSON.parse((await page.locator('[data-testid="try-json-answer"]').textContent())!), JSON.parse(body));
    await closePage(page);
  });

  test('the try-it panel says an answer that is not JSON is shown as it came, and how much of a long one is shown, in bytes', async () => {
    const page = await openPage(`${open.url}/dashboard/#/try/simple`, { expectedErrors: /status of 502/ });
    await page.click('[data-tab="json"]');
    await page.locator('#try-send:enabled').waitFor();
    // A proxy's error page in front of the server.
    let answer = { status: 502, contentType: 'text/html', body: '<html><body><h1>502 Bad Gateway</h1></body></html>' };
    await page.route('**/v2/models/simple/infer', (route) => route.fulfill(answer));
    await page.click('#try-send');
    const notJson = page.locator('[data-testid="try-json-not-json"]');
    await notJson.waitFor();
    assert.equal(await notJson.textContent(), 'The answer is not JSON: it is shown as the server sent it.');
    assert.equal(await page.locator('[data-testid="try-json-answer"]').textContent(), answer.body);
    assert.equal(await page.locator('[data-testid="try-json-cut"]').count(), 0, 'nothing was cut');
    // 2.2 million characters of two bytes each: cut by characters, its size told in bytes (4.4 MB, not 2.2).
    answer = { status: 200, contentType: 'text/plain', body: 'é'.repeat(2_200_000) };
    await page.click('#try-send');
    const cut = page.locator('[data-testid="try-json-cut"]');
    await cut.waitFor();
    assert.match((await cut.textContent())!, /^Only its first 2,000,000 characters are shown \(4\.4 MB in all\)\.\s+Download the whole answer$/);
    assert.match((await page.locator('[data-testid="try-json-answer"]').textContent())!, /é … 200,000 more characters$/);
    assert.equal(await page.locator('[data-testid="try-json-all"]').count(), 0);
    await closePage(page);
  });

  test('a try-it address naming a model that is not ready says why, sends nothing, and tries no other model in its place', async () => {
    const reason = (await json(`${open.url}/dashboard/api/overview`)).models.find((model: Json) => model.name === 'broken').versions[0].reason;
    const page = await openPage(`${open.url}/dashboard/#/try/broken`);
    const sent: string[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST') sent.push(request.url());
    });
    const alert = page.locator('[data-testid="try-unavailable"]');
    await alert.waitFor();
    assert.equal(await alert.innerText(), `broken is not available: ${reason}`);
    assert.equal(await page.locator('#try-model').inputValue(), 'broken', 'it was not swapped for the first ready model');
    assert.equal(await page.locator('#try-model option:checked').textContent(), 'broken (not available)');
    assert.ok(await page.locator('#try-file').isDisabled());
    await page.click('[data-tab="json"]');
    assert.ok(await page.locator('#try-send').isDisabled());
    assert.equal(await page.locator('#try-json').inputValue(), '');
    // The snapshots that come meanwhile keep it so: the tab reading the stream draws each event, then passes it on
    // over its BroadcastChannel, where a listener of the same name in the page hears it (the server has no tokens).
    await page.evaluate(
      () =>
        new Promise<void>((resolve) => {
          const listener = new BroadcastChannel('nereid-dashboard:none');
          listener.onmessage = ({ data }) => {
            if (!data.event) return;
            listener.close();
            resolve();
          };
        }),
    );
    assert.equal(await page.locator('#try-model').inputValue(), 'broken');
    assert.deepEqual(sent, [], 'nothing was sent');
    // Picking another model tries that one.
    await page.selectOption('#try-model', 'simple');
    await alert.waitFor({ state: 'hidden' });
    await page.locator('#try-send:enabled').waitFor();
    await page.waitForFunction(() => !document.querySelector('#try-model option[value="broken"]'));
    await closePage(page);
    // A name the server has not got at all.
    const unknown = await openPage(`${open.url}/dashboard/#/try/no_such_model`);
    await unknown.locator('[data-testid="try-unavailable"]').waitFor();
    assert.equal(await unknown.locator('[data-testid="try-unavailable"]').innerText(), "no_such_model is not available: the server has no model named 'no_such_model' (the overview lists those it has)");
    await closePage(unknown);
  });

  test('the try-it panel flags an image unlike the training data above its labels, with its OOD score against the threshold, and says nothing alarming of a garment', async () => {
    // An inverted garment: the model still answers a confident label (Pullover, above its low-confidence
    // threshold), and only the OOD verdict says that a white-on-black garment is not what it was trained on.
    const garment = join(imagesDir, '1.png');
    const inverted = join(imagesDir, '1-inverted.png');
    await sharp(garment).negate().png().toFile(inverted);
    const verdictOf = async (file: string) => {
      const answer = await json(`${open.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: await readFile(file), headers: { 'content-type': 'image/png' } });
      return answer.ood as { score: number; threshold: number; out_of_distribution: boolean };
    };
    const [garmentVerdict, invertedVerdict] = [await verdictOf(garment), await verdictOf(inverted)];
    assert.equal(garmentVerdict.out_of_distribution, false);
    assert.equal(invertedVerdict.out_of_distribution, true, `the inverted garment scored ${invertedVerdict.score}`);
    const figure = (value: number) => value.toLocaleString('en-US', { maximumFractionDigits: 1 });

    const page = await openPage(`${open.url}/dashboard/#/try/fashion_mnist`);
    await page.locator('#try-file:enabled').waitFor();
    await page.setInputFiles('#try-file', inverted);
    const warning = page.locator('[data-testid="ood-warning"]');
    await warning.waitFor();
    assert.match((await warning.textContent()) ?? '', /unlike the model's training data; the label is not to be trusted/);
    assert.equal(await warning.locator('[data-testid="ood-score"]').textContent(), `OOD score ${figure(invertedVerdict.score)}, above the threshold ${figure(invertedVerdict.threshold)}.`);
    // Above the labels, where a reader looks first.
    assert.equal(await page.locator('#try-answer [data-testid="ood-warning"] + ol.labels.untrusted [data-testid="label"]').count(), 5);
    await screenshot(page, 'try-it-ood.png');

    await page.setInputFiles('#try-file', garment);
    await page.locator('#try-answer ol.labels:not(.untrusted)').waitFor();
    assert.equal(await warning.count(), 0, 'no warning for a garment like the training data');
    assert.equal(await page.locator('[data-testid="ood-score"]').textContent(), `Like the training data (OOD score ${figure(garmentVerdict.score)}, under the threshold ${figure(garmentVerdict.threshold)}).`);
    await closePage(page);
  });

  test("after a file the browser cannot display, the try-it panel hides the preview and shows the server's refusal; the next image shows again", async () => {
    // Bytes that no decoder takes, named as a PNG, as a truncated download or a mislabelled file would be.
    const corrupt = join(imagesDir, 'corrupt.png');
    await writeFile(corrupt, Buffer.from(Array.from({ length: 3000 }, (_, index) => (index * 151 + 7) % 256)));
    const refusal = await fetch(`${open.url}/v2/models/fashion_mnist/classify`, { method: 'POST', body: await readFile(corrupt), headers: { 'content-type': 'image/png' } });
    assert.equal(refusal.status, 400);
    const reason = ((await refusal.json()) as Json).error;

    const page = await openPage(`${open.url}/dashboard/#/try/fashion_mnist`, { expectedErrors: /status of 400 \(Bad Request\) \(.*\/classify\?/ });
    await page.locator('#try-file:enabled').waitFor();
    await page.setInputFiles('#try-file', corrupt);
    const error = page.locator('[data-testid="try-error"]');
    await error.waitFor();
    assert.equal(await error.textContent(), `corrupt.png is not an image the server can read: ${reason}`);
    await page.locator('#try-figure').waitFor({ state: 'hidden' });
    await screenshot(page, 'try-it-corrupt.png');

    // The server tells the format by the bytes: a garment saved as .txt is classified (the browser's type for it,
    // text/plain, was sent and refused), and a text file is refused in a page user's words, not curl's.
    const contentTypes: string[] = [];
    page.on('request', (request) => {
      if (request.url().includes('/classify')) contentTypes.push(request.headers()['content-type']);
    });
    const scan = join(imagesDir, 'scan.txt');
    await writeFile(scan, await readFile(join(imagesDir, '0.png')));
    await page.setInputFiles('#try-file', scan);
    await page.locator('[data-testid="label"]').first().waitFor();
    const notes = join(imagesDir, 'notes.txt');
    await writeFile(notes, 'a shopping list, not a garment\n');
    await page.setInputFiles('#try-file', notes);
    await error.waitFor();
    assert.equal(await error.textContent(), 'notes.txt is not an image the server can read: the file is not an image in a supported format (JPEG, PNG, WebP, GIF, TIFF, AVIF)');
    assert.deepEqual(contentTypes, ['application/octet-stream', 'application/octet-stream']);

    await page.setInputFiles('#try-file', join(imagesDir, '0.png'));
    await page.locator('[data-testid="label"]').first().waitFor();
    assert.equal(await error.count(), 0);
    assert.equal(await page.locator('#try-preview').evaluate((image: HTMLImageElement) => image.naturalWidth), 28, 'the garment is shown at its own 28 pixels');
    assert.equal(await page.locator('#try-figure').isVisible(), true);
    await closePage(page);
  });

  test("the try-it panel sends an image to a model with the OCR outputs and draws its lines' boxes and text", async () => {
    const image = join(imagesDir, '0.png');
    const { width, height } = await sharp(image).metadata();
    const page = await openPage(`${open.url}/dashboard/#/try/text_lines`);
    await page.locator('#try-model option[value="text_lines"]').waitFor({ state: 'attached' });
    // Chosen from the model's outputs (text, boxes): the image goes to /infer as its BYTES input.
    await page.locator('#try-mode option[value="text"]:checked').waitFor({ state: 'attached' });
    await page.setInputFiles('#try-file', image);
    await page.locator('[data-testid="text-line"]').nth(1).waitFor();
    assert.deepEqual(await page.locator('[data-testid="text-line"] .label-name').allTextContents(), TEXT_LINES.map((line) => line.text));
    assert.deepEqual(await page.locator('[data-testid="text-line"] [data-testid="confidence"]').allTextContents(), TEXT_LINES.map((line) => `${(line.score * 100).toFixed(1)} %`));
    const overlay = await page.locator('#try-overlay').evaluate((svg) => ({
      viewBox: svg.getAttribute('viewBox'),
      polygons: [...svg.querySelectorAll('polygon')].map((polygon) => polygon.getAttribute('points')!.split(/[ ,]/).map(Number)),
      captions: [...svg.querySelectorAll('text')].map((text) => text.textContent),
    }));
    assert.equal(overlay.viewBox, `0 0 ${width} ${height}`, "drawn in the image's own pixels");
    // Each box is captioned with its line's number in the list: a caption of the whole text would cover the line above.
    assert.deepEqual(overlay.captions, TEXT_LINES.map((_, index) => String(index + 1)));
    // Clockwise from top-left, in pixels.
    const expected = TEXT_LINES.map(({ x: [x0, x1], y: [y0, y1] }) => [x0, y0, x1, y0, x1, y1, x0, y1].map((fraction, index) => fraction * (index % 2 ? height! : width!)));
    overlay.polygons.forEach((points, line) => points.forEach((value, index) => assert.ok(Math.abs(value - expected[line][index]) < 1e-3, `line ${line} point ${index}: ${value}`)));
    await screenshot(page, 'try-it-text.png');
    await closePage(page);
  });

  test('the try-it panel shows the answer to the latest image only: a slow answer to the image it replaced is not drawn over it', async () => {
    const page = await openPage(`${open.url}/dashboard/#/try/text_lines`);
    await page.locator('#try-mode option[value="text"]:checked').waitFor({ state: 'attached' });
    // The text model's answer is held until the garment's has been shown, as a slow model's would be.
    let held!: (route: import('playwright-core').Route) => void;
    const heldRoute = new Promise<import('playwright-core').Route>((resolve) => (held = resolve));
    await page.route('**/v2/models/text_lines/infer', (route) => held(route));
    await page.setInputFiles('#try-file', join(imagesDir, '1.png'));
    const slow = await heldRoute;
    await page.locator('[data-testid="try-sending"]').waitFor();
    await page.waitForFunction(() => (document.getElementById('try-preview') as HTMLImageElement).naturalWidth > 0);
    await page.selectOption('#try-model', 'fashion_mnist');
    await page.locator('#try-mode option[value="classify"]:checked').waitFor({ state: 'attached' });
    await page.setInputFiles('#try-file', join(imagesDir, '0.png'));
    await page.locator('[data-testid="label"]').first().waitFor();
    const shown = await page.locator('#try-answer').innerHTML();
    // Now the text model answers: its answer arrives, is read, and is not shown.
    const answered = page.waitForResponse('**/v2/models/text_lines/infer');
    await slow.continue();
    await (await answered).finished();
    await page.evaluate(async () => {
      for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
    });
    assert.equal(await page.locator('[data-testid="text-line"]').count(), 0, "the text model's late answer is not drawn");
    assert.equal(await page.locator('#try-answer').innerHTML(), shown, "the garment's answer stays");
    assert.equal(await page.locator('#try-overlay polygon').count(), 0);
    await closePage(page);
  });

  test('the try-it panel reads and draws a /detect answer: boxes in image pixels with label and score', async () => {
    const page = await openPage(`${open.url}/dashboard/`);
    const drawn = await page.evaluate(async (module) => {
      const { answerKind, detectionShapes, drawShapes, imageModeOf } = await import(module);
      // The contract's answer (helper "tfjs"): box [x_min, y_min, x_max, y_max] in pixels of the image sent.
      const answer = {
        model_name: 'object_detection',
        model_version: '1',
        image: { width: 640, height: 480 },
        detections: [
          { label: 'cat', index: 15, score: 0.83, box: [10, 60, 300, 400] },
          { label: 'dog', index: 16, score: 0.5, box: [320, 0, 630, 470] },
        ],
      };
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      document.body.append(svg);
      drawShapes(svg, detectionShapes(answer), answer.image);
      const texts = [...svg.querySelectorAll('text')];
      return {
        kind: answerKind(answer),
        viewBox: svg.getAttribute('viewBox'),
        polygons: [...svg.querySelectorAll('polygon')].map((polygon) => polygon.getAttribute('points')),
        captions: texts.map((text) => text.textContent),
        // The dog's box touches the top: its caption goes inside the image.
        captionTops: texts.map((text) => Number(text.getAttribute('y'))),
        modes: [
          imageModeOf({ outputs: [{ name: 'text' }, { name: 'boxes' }, { name: 'scores' }] }, { classify: false, detect: false }, { classify: true, detect: false }),
          imageModeOf({ outputs: [{ name: 'tower_0/detections' }] }, { classify: true, detect: true }, { classify: true, detect: true }),
          // A server without /detect: a detector's photos go to /classify.
          imageModeOf({ outputs: [{ name: 'tower_0/detections' }] }, { classify: true, detect: true }, { classify: true, detect: false }),
          imageModeOf({ outputs: [{ name: 'logits' }] }, { classify: true, detect: false }, { classify: true, detect: true }),
          // Named for boxes, or for detection, and no detector by the server's checks: tensors only.
          imageModeOf({ outputs: [{ name: 'detection_boxes' }] }, { classify: false, detect: false }, { classify: true, detect: true }),
          imageModeOf({ outputs: [{ name: 'OUTPUT0' }] }, undefined, { classify: true, detect: true }),
        ],
      };
    }, '/dashboard/assets/try-it.js');
    assert.equal(drawn.kind, 'detections');
    assert.equal(drawn.viewBox, '0 0 640 480');
    assert.deepEqual(drawn.polygons, ['10,60 300,60 300,400 10,400', '320,0 630,0 630,470 320,470']);
    assert.deepEqual(drawn.captions, ['cat 83%', 'dog 50%']);
    assert.ok(drawn.captionTops[0] < 60 && drawn.captionTops[1] > 0, `captions above the box, or inside it at the top edge: ${drawn.captionTops}`);
    assert.deepEqual(drawn.modes, ['text', 'detect', 'classify', 'classify', undefined, undefined]);
    await closePage(page);
  });

  test('the batch jobs page says how to follow a queue, then shows the progress and failures of its jobs', { timeout: 120_000 }, async () => {
    const unconfigured = await openPage(`${open.url}/dashboard/#/jobs`);
    assert.equal(await unconfigured.locator('[data-testid="jobs-hint"]').textContent(), JOBS_HINT);
    await closePage(unconfigured);

    const redis = await startRedisServer();
    const queue = `redis://127.0.0.1:${redis.port}`;
    const jobs = await runDashboardJobs(queue, repoDir);
    const following = await startTestServer({ models: writeSimpleModel, http: { dashboardJobs: batchJobsSource({ queue }) } });
    try {
      const listed = await json(`${following.url}/dashboard/api/jobs`);
      assert.equal(listed.configured, true);
      assert.equal(listed.queue, queue);
      assert.equal(listed.queue_name, 'nereid-batch');
      for (const name of ['dashboard-simple', 'dashboard-ghost']) {
        const shown = listed.jobs.find((candidate: Json) => candidate.job === name);
        assert.deepEqual(shown, JSON.parse(JSON.stringify(await batchJobStatus({ queue, job: name }))), `${name}: what \`nereid batch status\` reports`);
      }
      const simple = listed.jobs.find((candidate: Json) => candidate.job === 'dashboard-simple');
      assert.equal(simple.recordsWritten, 7);
      assert.equal(simple.recordsFailed, 1);
      const ghost = listed.jobs.find((candidate: Json) => candidate.job === 'dashboard-ghost');
      assert.equal(ghost.chunkStates.failed, 1);
      assert.match(ghost.failedChunks[0].reason, /ghost/);

      const page = await openPage(`${following.url}/dashboard/#/jobs`);
      const simpleJob = page.locator('section[data-job="dashboard-simple"]');
      await simpleJob.waitFor();
      assert.equal(await simpleJob.locator('[data-testid="job-status"]').textContent(), 'done');
      assert.equal(await simpleJob.locator('[data-testid="job-written"] .card-value').textContent(), '7 / 7');
      assert.equal(await simpleJob.locator('[data-testid="job-failed"] .card-value').textContent(), '1');
      const ghostJob = page.locator('section[data-job="dashboard-ghost"]');
      assert.equal(await ghostJob.locator('[data-testid="job-failed-chunks"] .card-value').textContent(), '1');
      assert.equal(await ghostJob.locator('[data-testid="failed-chunks"] tbody tr').count(), 1);
      assert.match((await ghostJob.locator('[data-testid="failed-chunks"] td.reason').first().textContent()) ?? '', /ghost/);
      await screenshot(page, 'jobs.png', { fullPage: true });
      await closePage(page);
      const phone = await openPage(`${following.url}/dashboard/#/jobs`, { width: 390, dark: true });
      await phone.locator('section[data-job="dashboard-ghost"]').waitFor();
      await screenshot(phone, 'jobs-phone-dark.png', { fullPage: true });
      await closePage(phone);

      // Redis gone: the page says so instead of showing stale jobs.
      await jobs.close();
      await redis.stop();
      const down = await fetch(`${following.url}/dashboard/api/jobs`);
      assert.equal(down.status, 503);
      assert.match(((await down.json()) as Json).error, /cannot reach Redis at 127\.0\.0\.1/);
    } finally {
      await following.close();
      await jobs.close();
      await redis.stop();
    }
  });

  test('a token pasted with a character no header carries (a zero-width space) is refused at the prompt, and one kept in the tab is dropped and asked for again', async () => {
    const page = await openPage(`${guarded.url}/dashboard/`, { expectedErrors: TOKEN_ASKED });
    await page.locator('#token-dialog[open]').waitFor();
    await page.fill('#token-input', `${MANAGEMENT_TOKEN}\u200b`);
    await page.click('#token-form button[type="submit"]');
    const error = page.locator('#token-error:not([hidden])');
    await error.waitFor();
    assert.equal(await error.textContent(), 'That token holds U+200B, which no token of this server holds (tokens are printable ASCII): paste it again without it.');
    assert.equal(await page.locator('#token-dialog[open]').count(), 1, 'the dialog stays open');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nereid-dashboard-token')), null);
    // As a tab that kept one before the prompt checked it: reloaded, it asks again instead of failing on every call.
    await page.evaluate((value) => sessionStorage.setItem('nereid-dashboard-token', value), `${MANAGEMENT_TOKEN}\u200b`);
    await page.reload();
    await page.locator('#token-dialog[open]').waitFor();
    await error.waitFor();
    assert.match((await error.textContent()) ?? '', /^That token holds U\+200B/);
    await page.fill('#token-input', ` ${MANAGEMENT_TOKEN} `);
    await page.click('#token-form button[type="submit"]');
    await page.locator('tr[data-model="simple"]').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nereid-dashboard-token')), MANAGEMENT_TOKEN);
    await closePage(page);
  });

  test('with a token set, the dashboard asks for it and then shows the models', async () => {
    const page = await openPage(`${guarded.url}/dashboard/`, { expectedErrors: TOKEN_ASKED });
    await page.locator('#token-dialog[open]').waitFor();
    await screenshot(page, 'token.png');
    await page.fill('#token-input', MANAGEMENT_TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.locator('tr[data-model="simple"]').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('nereid-dashboard-token')), MANAGEMENT_TOKEN);
    await closePage(page);
  });
  test('Escape puts the token prompt away, saying the data needs a token, and the header asks again; a token of another scope is told which scope it lacks', async () => {
    const page = await openPage(`${guarded.url}/dashboard/`, { expectedErrors: TOKEN_ASKED });
    await page.locator('#token-dialog[open]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('#token-dialog:not([open])').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#connection').innerText(), 'no token: the data needs one');
    await page.click('[data-testid=token-open]');
    await page.locator('#token-dialog[open]').waitFor();
    // An inference token: it opens this server, not the dashboard's data.
    await page.fill('#token-input', INFERENCE_TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.locator('#token-error:not([hidden])').waitFor();
    assert.equal(
      await page.locator('#token-error').innerText(),
      'The server refused that token: this token opens the inference scope, not the management scope this needs: use a token of the management scope (or of all scopes)',
    );
    await page.fill('#token-input', MANAGEMENT_TOKEN);
    await page.click('#token-form button[type="submit"]');
    await page.locator('tr[data-model="simple"]').waitFor();
    await closePage(page);
  });

  test('a server that went away is named, with the retrying, in the header and in the try-it answer', { timeout: 60_000 }, async () => {
    const leaving = await startTestServer({ models: writeSimpleModel });
    const page = await openPage(`${leaving.url}/dashboard/#/try/simple`, { expectedErrors: /ERR_CONNECTION_REFUSED|Failed to load resource/ });
    await page.waitForFunction(() => (document.getElementById('try-json') as HTMLTextAreaElement).value !== '');
    // The server drains first: that ends the page's stream, which the front end's close would wait for.
    await leaving.server.close();
    await leaving.close();
    const said = `cannot reach the server at ${leaving.url}`;
    await page.waitForFunction((text) => document.getElementById('connection')!.textContent === text, `${said}, retrying`);
    await page.click('button[data-tab=json]');
    await page.click('#try-send');
    await page.waitForFunction((text) => document.querySelector('[data-testid=try-error]')?.textContent === text, said);
    await closePage(page);
  });
});
