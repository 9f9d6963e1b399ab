/**
 * `nereid quantize` and `nereid eval` on the bundled PaddleOCR models with text the project renders,
 * given as a batch job's JSONL of input tensors: the direction classifier (an opset-9 Paddle export)
 * quantized statically from rendered lines and scored against their orientation, the recogniser (and
 * its int8 version bundled in the repository)
 * scored by the text it reads, and the detector's probability maps compared by IoU.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { EvalReport } from '../src/eval/index.js';
import type { QuantizeReport } from '../src/quantize/index.js';
import { runCli } from './support/cli-server.js';
import { optimizedOpTypes } from './support/onnx-runs.js';
import { detectionInput, directionInput, inputRecord, recognitionInput, renderTextLine, rotate180, textLines } from './support/ocr.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
let work: string;
let repository: string;
let lines: string[];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'nereid-ocr-quantize-'));
  repository = join(work, 'models');
  for (const model of ['ocr_direction', 'ocr_recognition', 'ocr_detection']) await cp(join(ROOT, 'models', model), join(repository, model), { recursive: true });
  lines = await textLines(['/usr/share/common-licenses/GPL-3']);
});

after(() => rm(work, { recursive: true, force: true }));

const nereid = (args: string[]) => runCli(args, 240_000);

/** Each line upright (label '0') and upside down ('180'), as the direction classifier's input. */
async function directionRecords(texts: readonly string[]): Promise<string> {
  const records: string[] = [];
  for (const text of texts) {
    const upright = await renderTextLine(text, { dpi: 110 });
    records.push(inputRecord(await directionInput(upright), '0'), inputRecord(await directionInput(await rotate180(upright)), '180'));
  }
  return `${records.join('\n')}\n`;
}

test('the direction classifier is quantized from rendered lines in JSONL and eval scores both versions on their orientation', async () => {
  await writeFile(join(work, 'direction-calibration.jsonl'), await directionRecords(lines.slice(0, 20)));
  await writeFile(join(work, 'direction-test.jsonl'), await directionRecords(lines.slice(20, 35)));
  const quantized = await nereid(['quantize', '--model', 'ocr_direction', '--model-repository', repository, '--calibration', join(work, 'direction-calibration.jsonl'), '--gate', 'agreement>=0.5', '--min-gate-examples', '8', '--json']);
  assert.equal(quantized.code, 0, quantized.stderr);
  const report = JSON.parse(quantized.stdout) as QuantizeReport;
  assert.equal(report.calibration.examples + report.calibration.heldOut, 40);
  assert.deepEqual(report.opset, { from: 9, to: 13, rewritten: { Clip: 18, Slice: 1 } });
  assert.equal(report.agreement.measure, 'top-1');
  // Depthwise convolutions have 9 weights per channel, beside which a channel's scale, zero point and int32 bias weigh: about half, not a quarter.
  assert.ok(report.sizes.ratio < 0.6, `size ratio ${report.sizes.ratio}`);
  const int8 = new Uint8Array(await readFile(join(repository, 'ocr_direction', '2', 'model.onnx')));
  const kernels = await optimizedOpTypes(int8, 'extended');
  assert.ok(kernels.filter((op) => op === 'QLinearConv').length >= 40, 'the convolutions run as integer kernels');

  const evaluated = await nereid(['eval', '--model', 'ocr_direction', '--model-repository', repository, '--data', join(work, 'direction-test.jsonl'), '--versions', '1,2', '--json']);
  assert.equal(evaluated.code, 0, evaluated.stderr);
  const comparison = JSON.parse(evaluated.stdout) as EvalReport;
  assert.equal(comparison.kind, 'classification');
  assert.equal(comparison.examples, 30);
  for (const version of comparison.versions) {
    const confusion = version.classification!.confusion;
    assert.deepEqual(confusion.map((row) => row[0] + row[1]), [15, 15], 'each orientation counted once per line');
  }
  // The float model read 86.7 % of these orientations right when this test was written; a broken input path reads half.
  assert.ok(comparison.versions[0].classification!.top1Accuracy >= 0.75, `fp32 orientation accuracy ${comparison.versions[0].classification!.top1Accuracy}`);
  assert.equal(comparison.versions[1].agreement!.count, 30);
});

test('the recogniser is scored by the text it reads: the bundled int8 version agrees closely, a copy of the float one exactly', async () => {
  await cp(join(repository, 'ocr_recognition', '1'), join(repository, 'ocr_recognition', '3'), { recursive: true });
  const records: string[] = [];
  for (const text of lines.slice(40, 48)) records.push(inputRecord(await recognitionInput(await renderTextLine(text, { dpi: 110 })), text));
  await writeFile(join(work, 'lines.jsonl'), `${records.join('\n')}\n`);
  const { code, stdout, stderr } = await nereid(['eval', '--model', 'ocr_recognition', '--model-repository', repository, '--data', join(work, 'lines.jsonl'), '--versions', '1,2,3', '--gate', 'accuracy>=0.6,character_agreement>=1', '--min-gate-examples', '8']);
  assert.equal(code, 0, stdout + stderr);
  assert.match(stdout, /output softmax_11\.tmp_0 \(ctc\): 8 examples, labelled with text/);
  // Version 2 is the int8 version bundled in the repository (0.28x the file); on 200 held-out lines it agreed on 99.93 % of characters.
  const int8 = /\| 2 \| (\d+) KiB \| \d+\.\d+ % \| \d+\.\d+ % \| \d+\.\d+ % \| (\d+\.\d+) % \|/.exec(stdout);
  assert.ok(int8, stdout);
  assert.ok(Number(int8[1]) < 0.3 * 10569, `int8 file ${int8[1]} KiB`);
  assert.ok(Number(int8[2]) >= 97, `int8 character agreement ${int8[2]} %`);
  assert.match(stdout, /\| 3 \| 10569 KiB \| \d+\.\d+ % \| \d+\.\d+ % \| 100\.00 % \| 100\.00 % \| 0\.0000 \|/);
  assert.match(stdout, /gate "accuracy>=0\.6,character_agreement>=1": PASSED/);
});

test('the detector is compared by the IoU of its thresholded maps; a gate on accuracy fails as not measured', async () => {
  await cp(join(repository, 'ocr_detection', '1'), join(repository, 'ocr_detection', '2'), { recursive: true });
  const pages: string[] = [];
  for (let page = 0; page < 2; page++) {
    const rendered = await Promise.all(lines.slice(50 + page * 2, 52 + page * 2).map((text) => renderTextLine(text, { dpi: 96 })));
    pages.push(inputRecord(await detectionInput(rendered)));
  }
  await writeFile(join(work, 'pages.jsonl'), `${pages.join('\n')}\n`);
  const { code, stdout } = await nereid(['eval', '--model', 'ocr_detection', '--model-repository', repository, '--data', join(work, 'pages.jsonl'), '--versions', '1,2', '--json', '--gate', 'agreement>=0.99,accuracy>=0.9', '--min-gate-examples', '1']);
  assert.equal(code, 1);
  const report = JSON.parse(stdout) as EvalReport;
  assert.equal(report.kind, 'mask');
  assert.deepEqual(report.versions[1].agreement && { measure: report.versions[1].agreement.measure, agreement: report.versions[1].agreement.agreement }, { measure: 'mean IoU', agreement: 1 });
  assert.deepEqual(report.gate!.failures, ['accuracy>=0.9: accuracy was not measured (a probability map is compared between versions only (mean IoU of its regions), never scored against labels; gate it on agreement)']);
});

test('auto quantizes the detector from rendered pages, keeping float the nodes that cost its maps most, until their IoU passes the gate', async () => {
  const fonts = ['DejaVu Sans', 'DejaVu Serif', 'DejaVu Sans Mono'];
  const dpis = [96, 110, 130];
  const pages: string[] = [];
  for (let page = 0; page < 15; page++) {
    const rendered = await Promise.all(lines.slice(100 + page * 3, 103 + page * 3).map((text, at) => renderTextLine(text, { font: fonts[(page + at) % 3], dpi: dpis[(page + at) % 3], margin: 12 })));
    pages.push(inputRecord(await detectionInput(rendered)));
  }
  await writeFile(join(work, 'detection-calibration.jsonl'), `${pages.join('\n')}\n`);
  const { code, stdout, stderr } = await nereid(['quantize', '--model', 'ocr_detection', '--model-repository', repository, '--calibration', join(work, 'detection-calibration.jsonl'), '--method', 'auto', '--output-version', '5', '--min-gate-examples', '3', '--json']);
  const report = JSON.parse(stdout) as QuantizeReport;
  assert.equal(report.agreement.measure, 'mean IoU');
  assert.equal(report.calibration.biasCorrection, true);
  const steps = report.search!;
  assert.equal(steps[0].floatNodes, 0);
  assert.equal(steps[0].passed, false, `fully int8, the maps' IoU was ${steps[0].agreement}`);
  if (report.decision.written) {
    assert.equal(code, 0, stderr);
    assert.ok(report.agreement.agreement >= 0.95, `held-out IoU ${report.agreement.agreement}`);
    const kept = report.floatNodes.filter((entry) => entry.reason === 'excluded').length;
    assert.ok(kept > 0 && report.quantizedNodes.length > 0);
    // The fewest float nodes that passed: every step that tried fewer failed.
    assert.ok(steps.some((step) => step.passed && step.floatNodes === kept));
    assert.ok(steps.every((step) => step.floatNodes >= kept || !step.passed), JSON.stringify(steps));
    assert.equal(JSON.parse(await readFile(join(repository, 'ocr_detection', '5', 'quantization.json'), 'utf8')).method, 'auto');
  } else {
    // Written only when faster than float; the decision then says so.
    assert.equal(code, 1);
    assert.match(report.decision.reason, /not faster/);
  }
});
