/**
 * The dashboard's try-it panel against a real server holding the bundled models (models/), in
 * headless Chromium (Debian's, driven by playwright-core): the V2 JSON request it pre-fills for each
 * model is one the server takes as it stands, and what it offers to do with an image follows what
 * the server reports of the model, not its name.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestServer, type TestServer } from './support/test-server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const BUNDLED = ['fashion_mnist', 'object_detection', 'ocr', 'ocr_detection', 'ocr_direction', 'ocr_recognition'];
/** The bundled models whose one input is an encoded image, which JSON cannot carry. */
const IMAGE_MODELS = new Set(['fashion_mnist', 'object_detection', 'ocr']);

describe('dashboard try-it panel, bundled models', () => {
  let served: TestServer;
  let browser: Browser;
  const pageErrors: string[] = [];

  before(async () => {
    served = await startTestServer({ repoDir: join(process.cwd(), 'models') });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await served?.close();
  });

  const openTry = async (model: string, expectedErrors?: RegExp): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
    page.on('console', (message) => {
      const logged = `${message.text()} (${message.location().url})`;
      if (message.type() === 'error' && !expectedErrors?.test(logged)) pageErrors.push(`${page.url()}: console error: ${logged}`);
    });
    await page.goto(`${served.url}/dashboard/#/try/${model}`);
    await page.waitForFunction((name) => (document.getElementById('try-model') as HTMLSelectElement | null)?.value === name, model);
    return page;
  };
  const closePage = async (page: Page) => {
    await page.close();
    assert.deepEqual(pageErrors.splice(0), [], 'the page threw or logged an error');
  };

  // One page per bundled model for both checks: opening a page is most of each model's time here.
  test("each bundled model's panel: what it does with an image follows what the server reports of the model, not its name (ocr_detection is no object detector); its V2 JSON template is the model's wire inputs, which the server takes as they stand (an image input: a clear word on the empty image)", async () => {
    const overview = (await (await fetch(`${served.url}/dashboard/api/overview`)).json()) as { models: { name: string; versions: { image_routes?: unknown }[] }[] };
    const expected: Record<string, string> = { fashion_mnist: 'classify', object_detection: 'detect', ocr: 'text', ocr_detection: '', ocr_direction: '', ocr_recognition: '' };
    for (const model of BUNDLED) {
      const reported = overview.models.find((candidate) => candidate.name === model)!.versions[0]!.image_routes;
      assert.deepEqual(reported, served.server.imageRoutes(model), `${model}: the snapshot's image routes are the server's`);
      const metadata = (await (await fetch(`${served.url}/v2/models/${model}`)).json()) as { inputs: { name: string; datatype: string }[] };
      const page = await openTry(model, IMAGE_MODELS.has(model) ? /status of 400/ : undefined);
      await page.waitForFunction(() => document.querySelectorAll('#try-mode option').length > 0);
      assert.equal(await page.locator('#try-mode').inputValue(), expected[model], `${model}: its image mode`);
      assert.equal(await page.locator('#try-file').isDisabled(), expected[model] === '', `${model}: the file picker is open to images only where a route takes them`);

      await page.waitForFunction(() => (document.getElementById('try-json') as HTMLTextAreaElement).value !== '');
      const template = JSON.parse(await page.locator('#try-json').inputValue());
      assert.deepEqual(
        template.inputs.map((input: { name: string; datatype: string }) => [input.name, input.datatype]),
        metadata.inputs.map((input) => [input.name, input.datatype]),
        `${model}: the template's inputs are the metadata's`,
      );
      await page.click('button[data-tab=json]');
      const answered = page.waitForResponse((response) => response.url().endsWith(`/v2/models/${model}/infer`));
      await page.click('#try-send');
      const response = await answered;
      const answer = await response.text();
      if (IMAGE_MODELS.has(model)) {
        assert.equal(response.status(), 400, `${model}: ${answer}`);
        assert.match(answer, /image is empty/, `${model}: the server says the template's image is empty`);
        assert.match(await page.locator('[data-testid=try-json-note]').innerText(), /Image tab/, `${model}: the panel says where an image goes`);
      } else {
        assert.equal(response.status(), 200, `${model}: the template as generated is accepted: ${answer}`);
        assert.ok(await page.locator('[data-testid=try-json-note]').isHidden());
      }
      await closePage(page);
    }
  });

  test("a detector's score threshold, merge overlap and box count are sent with the image and redraw its boxes; the answer's phase timings are shown", { timeout: 120_000 }, async () => {
    const cat = join(process.cwd(), 'examples', 'images', 'cat.jpg');
    const detect = async (query: string) => {
      const response = await fetch(`${served.url}/v2/models/object_detection/detect?${query}`, { method: 'POST', body: await readFile(cat), headers: { 'content-type': 'image/jpeg' } });
      assert.equal(response.status, 200);
      return ((await response.json()) as { detections: { label: string }[] }).detections.map((detection) => detection.label);
    };
    const [atDefault, atTenth, unmerged] = [
      await detect('threshold=0.3&max_detections=20'),
      await detect('threshold=0.1&max_detections=20'),
      await detect('threshold=0.05&iou_threshold=0.95&max_detections=20'),
    ];
    assert.ok(atTenth.length > atDefault.length + 1, `more boxes at 0.1 (${atTenth}) than at 0.3 (${atDefault})`);

    const page = await openTry('object_detection');
    const options = page.locator('[data-testid=detect-options]');
    await options.waitFor();
    assert.equal(await page.locator('#try-threshold').inputValue(), '0.3', "the server's default");
    assert.equal(await page.locator('#try-iou').inputValue(), '0.5');
    assert.equal(await page.locator('#try-max-detections').inputValue(), '20');
    // Each answer the page gets, read on its way (a body read back through the inspector's cache may have been evicted).
    const answers: { url: string; answer: { detections: unknown[]; timing: Record<string, number> } }[] = [];
    await page.route('**/v2/models/object_detection/detect?*', async (route) => {
      const response = await route.fetch();
      const body = await response.text();
      answers.push({ url: route.request().url(), answer: JSON.parse(body) });
      await route.fulfill({ response, body });
    });
    const answerTo = async (act: () => Promise<unknown>) => {
      const before = answers.length;
      await act();
      await page.waitForFunction(() => !document.querySelector('[data-testid=try-sending]'));
      assert.equal(answers.length, before + 1, 'one request per change');
      const { url, answer } = answers.at(-1)!;
      // The page has drawn this answer once its list holds as many rows as the answer boxes.
      await page.waitForFunction((count) => document.querySelectorAll('[data-testid=detection]').length === count && document.querySelectorAll('#try-overlay polygon').length === count && !document.querySelector('[data-testid=try-sending]'), answer.detections.length);
      return { query: new URL(url).searchParams, answer };
    };
    const labels = () => page.locator('[data-testid=detection] .label-name').allTextContents();
    const setValue = (selector: string, value: string) =>
      page.locator(selector).evaluate((input: HTMLInputElement, given) => {
        input.value = given;
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new Event('change', { bubbles: true }));
      }, value);

    const first = await answerTo(() => page.setInputFiles('#try-file', cat));
    assert.equal(first.query.get('threshold'), '0.3');
    assert.equal(first.query.get('max_detections'), '20');
    assert.equal(first.query.get('iou_threshold'), '0.5');
    assert.deepEqual(await labels(), atDefault);
    // The server's phases, as /classify's are shown.
    const timings = await page.locator('[data-testid=timings] tr').evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
    const { timing } = first.answer;
    assert.deepEqual(timings, [
      ['pre-process', `${timing.preprocess_ms!.toFixed(2)} ms`],
      ['queue', `${timing.queue_ms!.toFixed(2)} ms`],
      ['inference', `${timing.inference_ms!.toFixed(2)} ms`],
      ['post-process', `${timing.postprocess_ms!.toFixed(2)} ms`],
      ['total', `${timing.total_ms!.toFixed(2)} ms`],
    ]);

    // Lowering the threshold asks again for the same image: the weaker boxes are drawn too.
    const lowered = await answerTo(() => setValue('#try-threshold', '0.1'));
    assert.equal(lowered.query.get('threshold'), '0.1');
    assert.deepEqual(await labels(), atTenth);
    assert.match(await page.locator('[data-testid=try-summary]').innerText(), new RegExp(`^${atTenth.length} object\\(s\\) · score ≥ 0\\.10, merged above 0\\.50 IoU, at most 20 · `));
    assert.equal(await page.locator('#try-threshold-value').innerText(), '0.10');
    const fewer = await answerTo(() => setValue('#try-max-detections', '2'));
    assert.equal(fewer.query.get('max_detections'), '2');
    assert.deepEqual(await labels(), atTenth.slice(0, 2));
    // Raising the merge overlap keeps boxes that overlap a stronger one of their class, as the server answers them.
    await answerTo(() => setValue('#try-max-detections', '20'));
    const weaker = await answerTo(() => setValue('#try-threshold', '0.05'));
    const overlapping = await answerTo(() => setValue('#try-iou', '0.95'));
    assert.equal(overlapping.query.get('iou_threshold'), '0.95');
    assert.deepEqual(await labels(), unmerged);
    assert.ok(unmerged.length > weaker.answer.detections.length, `boxes that only merging removed: ${unmerged.length} at 0.95 IoU, ${weaker.answer.detections.length} at 0.5`);
    // A threshold above every score: nothing drawn, and the page says what to do.
    await answerTo(() => setValue('#try-threshold', '0.99'));
    assert.match(await page.locator('#try-answer').innerText(), /Nothing found above the threshold: lower it to see weaker detections/);
    await closePage(page);
  });

  test("the OCR pipeline's answer shows the time of each of its steps, from its timings output", { timeout: 120_000 }, async () => {
    const page = await openTry('ocr');
    await page.locator('#try-mode option[value="text"]:checked').waitFor({ state: 'attached' });
    assert.ok(await page.locator('[data-testid=detect-options]').isHidden(), 'no detection options for OCR');
    const answered = page.waitForResponse((response) => response.url().endsWith('/v2/models/ocr/infer'));
    await page.setInputFiles('#try-file', join(process.cwd(), 'examples', 'images', 'page.png'));
    const answer = (await (await answered).json()) as { outputs: { name: string; data: string[] }[] };
    const steps = JSON.parse(answer.outputs.find((output) => output.name === 'timings')!.data[0]!) as Record<string, number>;
    await page.locator('[data-testid=timings]').waitFor();
    const shown = await page.locator('[data-testid=timings] tr').evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
    const expected = Object.entries(steps)
      .filter(([key]) => key.endsWith('_ms'))
      .map(([key, ms]) => [key.slice(0, -3).replaceAll('_', ' '), `${ms.toFixed(2)} ms`]);
    assert.deepEqual(shown, expected);
    assert.deepEqual(shown.map(([step]) => step).filter((step) => ['detection', 'recognition', 'total'].includes(step!)), ['detection', 'recognition', 'total']);
    await closePage(page);
  });

  test('the model list follows the repository: a model loaded after the page opened appears, one unloaded goes', { timeout: 120_000 }, async () => {
    // A short stream interval: each step waits for the snapshot that shows the repository's change.
    const explicit = await startTestServer({ repoDir: join(process.cwd(), 'models'), server: { modelControlMode: 'explicit', loadModels: ['ocr_direction'] }, http: { dashboardIntervalMs: 100 } });
    try {
      const page = await browser.newPage();
      page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
      await page.goto(`${explicit.url}/dashboard/#/try/ocr_direction`);
      const listed = () => page.locator('#try-model option').allTextContents();
      await page.waitForFunction(() => (document.getElementById('try-model') as HTMLSelectElement | null)?.value === 'ocr_direction');
      assert.deepEqual(await listed(), ['ocr_direction']);
      const repository = async (action: string, model: string) => {
        const response = await fetch(`${explicit.url}/v2/repository/models/${model}/${action}`, { method: 'POST' });
        assert.equal(response.status, 200, await response.text());
      };
      await repository('load', 'ocr_recognition');
      await page.waitForFunction(() => document.querySelectorAll('#try-model option').length === 2);
      assert.deepEqual(await listed(), ['ocr_direction', 'ocr_recognition']);
      assert.equal(await page.locator('#try-model').inputValue(), 'ocr_direction', 'the choice stays while its model does');
      await repository('unload', 'ocr_direction');
      await page.waitForFunction(() => document.querySelectorAll('#try-model option').length === 1);
      assert.deepEqual(await listed(), ['ocr_recognition']);
      assert.equal(await page.locator('#try-model').inputValue(), 'ocr_recognition');
      // The panel now describes the model left: its template is that model's.
      await page.waitForFunction(() => (document.getElementById('try-json') as HTMLTextAreaElement).value.includes('"shape":[1,3,48,1]'));
      await repository('unload', 'ocr_recognition');
      await page.waitForFunction(() => (document.getElementById('try-model') as HTMLSelectElement).disabled);
      assert.match(await page.locator('#image-hint').innerText(), /No model is ready/);
      await closePage(page);
    } finally {
      await explicit.close();
    }
  });
});
