/**
 * The dashboard's try-it panel against a real server holding the bundled models (models/), in
 * headless Chromium (Debian's, driven by playwright-core): the V2 JSON request it pre-fills for each
 * model is one the server takes as it stands, and what it offers to do with an image follows what
 * the server reports of the model, not its name.
 */
import assert from 'node:assert/strict';
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

  test("the V2 JSON template of every bundled model is the model's wire inputs, which the server takes as they stand (an image input: a clear word on the empty image)", async () => {
    for (const model of BUNDLED) {
      const metadata = (await (await fetch(`${served.url}/v2/models/${model}`)).json()) as { inputs: { name: string; datatype: string }[] };
      const page = await openTry(model, IMAGE_MODELS.has(model) ? /status of 400/ : undefined);
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
  test('what the panel does with an image follows what the server reports of the model, not its name: ocr_detection is no object detector', async () => {
    const overview = (await (await fetch(`${served.url}/dashboard/api/overview`)).json()) as { models: { name: string; versions: { image_routes?: unknown }[] }[] };
    const expected: Record<string, string> = { fashion_mnist: 'classify', object_detection: 'detect', ocr: 'text', ocr_detection: '', ocr_direction: '', ocr_recognition: '' };
    for (const model of BUNDLED) {
      const reported = overview.models.find((candidate) => candidate.name === model)!.versions[0]!.image_routes;
      assert.deepEqual(reported, served.server.imageRoutes(model), `${model}: the snapshot's image routes are the server's`);
      const page = await openTry(model);
      await page.waitForFunction(() => document.querySelectorAll('#try-mode option').length > 0);
      assert.equal(await page.locator('#try-mode').inputValue(), expected[model], `${model}: its image mode`);
      assert.equal(await page.locator('#try-file').isDisabled(), expected[model] === '', `${model}: the file picker is open to images only where a route takes them`);
      await closePage(page);
    }
  });
  test('the model list follows the repository: a model loaded after the page opened appears, one unloaded goes', { timeout: 120_000 }, async () => {
    const explicit = await startTestServer({ repoDir: join(process.cwd(), 'models'), server: { modelControlMode: 'explicit', loadModels: ['ocr_direction'] } });
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
