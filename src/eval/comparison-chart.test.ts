/** The comparison chart: what it shows of a hand-built report, that hostile text stays text, and that it renders as SVG and PNG. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import type { ClassificationReport } from './classification-metrics.js';
import { chartFormatOf, comparisonChartSvg, escapeXml, renderComparisonChart, wrapText, writeComparisonChart } from './comparison-chart.js';
import { formatEvalReport, type EvalReport } from './run-eval.js';

function classification(confusion: number[][]): ClassificationReport {
  const count = confusion.flat().reduce((sum, value) => sum + value, 0);
  const correct = confusion.reduce((sum, row, index) => sum + row[index], 0);
  return { count, top1Accuracy: correct / count, k: 2, topKAccuracy: 1, perClass: confusion.map(() => ({ precision: NaN, recall: NaN, support: 0 })), confusion, ece: 0.05 };
}

/** Three classes, eight images: v1 gets 6 right, v2 5, agreeing with v1 on 7 of 8. */
const report: EvalReport = {
  model: 'shapes',
  output: 'probabilities',
  kind: 'classification',
  examples: 8,
  classes: ['circle', 'square', 'triangle'],
  versions: [
    { version: '1', sizeBytes: 4096, classification: classification([[3, 0, 0], [1, 2, 0], [0, 1, 1]]), examplesPerSecond: 100 },
    {
      version: '2',
      sizeBytes: 1536,
      classification: classification([[3, 0, 0], [1, 1, 1], [0, 1, 1]]),
      agreement: { count: 8, measure: 'top-1', agreement: 0.875, maxAbsDelta: 0.25, meanAbsDelta: 0.01 },
      examplesPerSecond: 125.25,
    },
  ],
  gate: { spec: 'accuracy_drop<=0.05,agreement>=0.9', passed: false, failures: ['accuracy_drop<=0.05: measured accuracy_drop = 0.125', 'agreement>=0.9: measured agreement = 0.875'], measured: { 'accuracy_drop<=0.05': 0.125, 'agreement>=0.9': 0.875 } },
};

/** Whether every tag closes in order: the well-formedness an XML parser checks first (sharp's, librsvg's, checks the rest). */
function tagsBalance(svg: string): boolean {
  const open: string[] = [];
  for (const [, closing, name, selfClosing] of svg.replace(/<\?xml[^>]*\?>/, '').matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (selfClosing) continue;
    if (!closing) open.push(name);
    else if (open.pop() !== name) return false;
  }
  return open.length === 0;
}

const svgSize = (svg: string) => ({ width: Number(/<svg[^>]* width="(\d+)"/.exec(svg)![1]), height: Number(/<svg[^>]* height="(\d+)"/.exec(svg)![1]) });

/** The texts drawn, unescaped, in document order. */
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((match) => match[1].replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&'));

test('each version is labelled with its figures, formatted as the text table formats them', () => {
  const svg = comparisonChartSvg(report);
  const drawn = texts(svg);
  const table = formatEvalReport(report);
  for (const figure of ['75.00 %', '62.50 %', '87.50 %', '100.0', '125.3', '4 KiB', '2 KiB']) {
    assert.ok(table.includes(figure), `the table shows ${figure}`);
    assert.ok(drawn.some((line) => line.startsWith(figure)), `the chart shows ${figure}: ${drawn.join(' | ')}`);
  }
  // v2 against v1, as ratios.
  assert.ok(drawn.includes('125.3 · 1.25× v1'));
  assert.ok(drawn.includes('2 KiB · 0.38× v1'));
  assert.equal(drawn.filter((line) => line === 'v1').length, 4, 'v1 in each of the four panels');
  assert.equal(drawn.filter((line) => line === 'v2').length, 4);
  assert.ok(drawn.includes('model shapes: 8 examples, 3 classes'));
  assert.ok(drawn.includes('Agreement with v1 (top-1)'));
  assert.equal(svg, comparisonChartSvg(report), 'the same report gives the same bytes');
});

test('the gate verdict is shown with each failing clause; a passing gate says so', () => {
  const drawn = texts(comparisonChartSvg(report));
  assert.ok(drawn.includes('Gate "accuracy_drop<=0.05,agreement>=0.9", v2 against v1: FAILED'));
  assert.ok(drawn.includes('✗ accuracy_drop<=0.05: measured accuracy_drop = 0.125'));
  assert.ok(drawn.includes('✗ agreement>=0.9: measured agreement = 0.875'));
  const passed = texts(comparisonChartSvg({ ...report, gate: { spec: 'agreement>=0.5', passed: true, failures: [], measured: { 'agreement>=0.5': 0.9 } } }));
  assert.ok(passed.includes('Gate "agreement>=0.5", v2 against v1: PASSED'));
  assert.ok(!texts(comparisonChartSvg({ ...report, gate: undefined })).some((line) => line.startsWith('Gate')));
});

test("the last version's confusion matrix is a heat map of counts, with the classes named", () => {
  const drawn = texts(comparisonChartSvg(report));
  assert.ok(drawn.includes('Confusion of v2: rows are labels, columns predicted classes (by index)'));
  for (const label of ['0 circle', '1 square', '2 triangle']) assert.ok(drawn.includes(label));
  // v2's non-zero cells, row by row (zeros are left blank): 3; 1 1 1; 1 1.
  const heatMap = drawn.slice(drawn.indexOf('predicted class') + 1);
  assert.deepEqual(heatMap, ['0', '1', '2', '0 circle', '3', '1 square', '1', '1', '1', '2 triangle', '1', '1']);
});

test('above 20 classes the heat map is left out with a note; without labels only agreement, speed and size are charted', () => {
  const classes = Array.from({ length: 21 }, (_, index) => `c${index}`);
  const identity = classes.map((_, row) => classes.map((__, column) => (row === column ? 1 : 0)));
  const wide: EvalReport = { model: 'wide', output: 'probabilities', kind: 'classification', examples: 21, classes, versions: [{ version: '1', sizeBytes: 1024, classification: classification(identity), examplesPerSecond: 1 }] };
  const drawn = texts(comparisonChartSvg(wide));
  assert.ok(!drawn.some((line) => line.startsWith('Confusion of')));
  assert.ok(drawn.some((line) => line.startsWith('Confusion matrix left out: 21 classes')));
  // One version: nothing to agree with.
  assert.ok(!drawn.some((line) => line.startsWith('Agreement with')));

  const unlabelled: EvalReport = { ...report, gate: undefined, versions: report.versions.map(({ classification: _, ...rest }) => rest) };
  const titles = texts(comparisonChartSvg(unlabelled));
  assert.ok(titles.includes('model shapes: 8 examples, unlabelled (agreement only)'));
  assert.ok(!titles.some((line) => line.startsWith('Top-1 accuracy') || line.startsWith('Confusion')));
  assert.ok(titles.includes('Agreement with v1 (top-1)') && titles.includes('reference') && titles.includes('87.50 %'));
});

test('text from the model, its labels and the gate is escaped, and nothing external is referenced', async () => {
  const hostile: EvalReport = {
    ...report,
    model: '<script>&"',
    classes: ["</text><script>alert('x')</script>", 'tab\tand\u0001control', 'ok'],
    gate: { ...report.gate!, spec: 'agreement>=0.9"/><a href="x' },
  };
  const svg = comparisonChartSvg(hostile);
  // Only shapes and text: no element or attribute that could run a script or fetch something.
  const elements = new Set([...svg.matchAll(/<([a-zA-Z]+)/g)].map((match) => match[1]));
  assert.deepEqual([...elements].sort(), ['line', 'rect', 'svg', 'text', 'title']);
  const attributes = new Set([...svg.matchAll(/<[a-zA-Z]+([^>]*)>/g)].flatMap((match) => [...match[1].matchAll(/([a-zA-Z:-]+)="/g)].map((attribute) => attribute[1])));
  assert.ok([...attributes].every((name) => !/href|^on|style|src/i.test(name)), [...attributes].join(' '));
  assert.ok(svg.includes('model &lt;script&gt;&amp;&quot;: 8 examples'));
  // Cut to fit the heat map's label column before it is escaped, so no entity is cut in half.
  assert.ok(svg.includes('>0 &lt;/text&gt;&lt;script&gt;alert(…</text>'));
  assert.ok(svg.includes('Gate &quot;agreement&gt;=0.9&quot;/&gt;&lt;a href=&quot;x&quot;, v2 against v1: FAILED'));
  assert.ok(svg.includes('tab\tand\ufffdcontrol'), 'a character XML forbids is replaced');
  assert.ok(tagsBalance(svg));
  // librsvg parses strictly: it would refuse a document with a stray '<' or '&'.
  const metadata = await sharp(Buffer.from(svg)).metadata();
  assert.equal(metadata.format, 'svg');
  assert.equal(escapeXml(`a<b>&"c'`), 'a&lt;b&gt;&amp;&quot;c&apos;');
});

test('the PNG is the SVG rendered at twice its size', async () => {
  const svg = comparisonChartSvg(report);
  assert.ok(tagsBalance(svg));
  assert.ok(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"'));
  const png = await renderComparisonChart(report, 'png');
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const metadata = await sharp(png).metadata();
  const { width, height } = svgSize(svg);
  assert.equal(metadata.format, 'png');
  assert.equal(metadata.width, 2 * width);
  assert.equal(metadata.height, 2 * height);
  // Drawn, not blank: the reference's bar colour is in the picture.
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let blue = 0;
  for (let pixel = 0; pixel < info.width * info.height; pixel++) if (data[pixel * 3] === 0x00 && data[pixel * 3 + 1] === 0x72 && data[pixel * 3 + 2] === 0xb2) blue += 1;
  assert.ok(blue > 1000, `${blue} pixels of v1's colour`);
});

test('the file name picks the format; any other extension is refused naming both', async () => {
  assert.equal(chartFormatOf('out/chart.svg'), 'svg');
  assert.equal(chartFormatOf('CHART.PNG'), 'png');
  assert.throws(() => chartFormatOf('chart.jpg'), /\.svg \(vector\) or \.png \(image\); 'chart\.jpg' ends in '\.jpg'/);
  assert.throws(() => chartFormatOf('chart'), /\.svg .* or \.png .*; 'chart' has no extension/);
  const dir = await mkdtemp(join(tmpdir(), 'nereid-chart-'));
  try {
    await writeComparisonChart(report, join(dir, 'chart.svg'));
    assert.equal(await readFile(join(dir, 'chart.svg'), 'utf8'), comparisonChartSvg(report));
    await writeComparisonChart(report, join(dir, 'chart.png'));
    assert.equal((await sharp(join(dir, 'chart.png')).metadata()).format, 'png');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('long text wraps at spaces, and a word longer than a line is cut', () => {
  assert.deepEqual(wrapText('one two three', 7), ['one two', 'three']);
  assert.deepEqual(wrapText('abcdefghij', 4), ['abcd', 'efgh', 'ij']);
  assert.deepEqual(wrapText('', 4), ['']);
});
