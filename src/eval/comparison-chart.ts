/**
 * The chart `nereid eval --plot` writes: the versions side by side in small multiples (top-1
 * accuracy, agreement with the reference, throughput, file size), the gate's verdict, and the last
 * version's confusion matrix as a heat map. A self-contained SVG — no scripts, no external fonts or
 * images — laid out by arithmetic alone, so one report always gives the same bytes; the PNG is that
 * SVG rendered by sharp.
 */
import { writeFile } from 'node:fs/promises';
import { loadSharp } from '../core/sharp.js';
import { formatPercent, formatRate, formatSize, type EvalReport, type VersionEvaluation } from './run-eval.js';
import { chartFormatOf, type ChartFormat } from './chart-format.js';

export { chartFormatOf, type ChartFormat } from './chart-format.js';

const WIDTH = 960;
const MARGIN = 24;
const GAP = 20;
/** Generic families the renderer has locally, so the file fetches nothing. */
const FONT = "'DejaVu Sans', Verdana, Arial, sans-serif";
/** Estimated glyph width as a share of the font size: wide enough for DejaVu Sans, so estimated lines do not overrun. */
const CHAR_WIDTH = 0.62;
/** One colour per version, the same in every panel (Okabe–Ito, told apart with colour-blindness too). */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#7F7F7F', '#000000'];
/** Above this many classes the heat map's cells and labels get too small to read. */
export const MAX_HEAT_MAP_CLASSES = 20;
/** The PNG's pixels per SVG unit: 2 keeps text sharp on high-density screens and when zoomed. */
const PNG_SCALE = 2;

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Text from model names, labels and the gate, made safe for XML: markup characters escaped, characters XML forbids replaced. */
export function escapeXml(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd').replace(/[&<>"']/g, (character) => ENTITIES[character]);
}

interface TextStyle {
  size?: number;
  bold?: boolean;
  anchor?: 'start' | 'middle' | 'end';
  fill?: string;
}

function text(x: number, y: number, content: string, { size = 13, bold = false, anchor = 'start', fill = '#222' }: TextStyle = {}): string {
  const weight = bold ? ' font-weight="bold"' : '';
  const align = anchor === 'start' ? '' : ` text-anchor="${anchor}"`;
  return `<text x="${Math.round(x)}" y="${Math.round(y)}" font-size="${size}"${weight}${align} fill="${fill}">${escapeXml(content)}</text>`;
}

const textWidth = (content: string, size: number) => content.length * size * CHAR_WIDTH;

/** Lines of at most `maxChars`, broken at spaces where there are any. */
export function wrapText(content: string, maxChars: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of content.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if (candidate.length <= maxChars) {
      line = candidate;
      continue;
    }
    if (line !== '') lines.push(line);
    line = word;
    while (line.length > maxChars) {
      lines.push(line.slice(0, maxChars));
      line = line.slice(maxChars);
    }
  }
  lines.push(line);
  return lines;
}

const truncate = (content: string, maxChars: number) => (content.length <= maxChars ? content : `${content.slice(0, maxChars - 1)}…`);

/** A drawing and the height it takes, for stacking. */
interface Block {
  svg: string[];
  height: number;
}

interface Bar {
  version: string;
  /** Absent: nothing to draw, only the label (the reference against itself, a figure not measured). */
  value?: number;
  label: string;
}

interface BarPanel {
  title: string;
  /** The value a full-width bar stands for; bars start at zero. */
  scaleMax: number;
  bars: Bar[];
}

const ROW = 24;
const PANEL_HEADER = 30;

function barPanel(panel: BarPanel, x: number, y: number, width: number, colourOf: (version: string) => string): Block {
  const height = PANEL_HEADER + panel.bars.length * ROW + 10;
  const svg = [`<rect x="${x}" y="${y}" width="${width}" height="${height}" fill="#fafafa" stroke="#d0d0d0"/>`, text(x + 10, y + 20, panel.title, { size: 14, bold: true })];
  const labelWidth = Math.max(...panel.bars.map((bar) => textWidth(`v${bar.version}`, 13))) + 18;
  const valueWidth = Math.max(...panel.bars.map((bar) => textWidth(bar.label, 12))) + 8;
  const barStart = x + labelWidth;
  const barRoom = Math.max(40, width - labelWidth - valueWidth - 10);
  svg.push(`<line x1="${Math.round(barStart)}" y1="${y + PANEL_HEADER - 4}" x2="${Math.round(barStart)}" y2="${y + height - 8}" stroke="#888"/>`);
  panel.bars.forEach((bar, index) => {
    const top = y + PANEL_HEADER + index * ROW;
    svg.push(text(x + 10, top + 16, `v${bar.version}`, { bold: true }));
    const drawn = bar.value !== undefined && Number.isFinite(bar.value) && panel.scaleMax > 0;
    const length = drawn ? Math.round((Math.max(0, bar.value!) / panel.scaleMax) * barRoom) : 0;
    if (drawn) svg.push(`<rect x="${Math.round(barStart)}" y="${top + 3}" width="${length}" height="${ROW - 6}" fill="${colourOf(bar.version)}"/>`);
    svg.push(text(barStart + length + 6, top + 16, bar.label, { size: 12, fill: drawn ? '#222' : '#666' }));
  });
  return { svg, height };
}

/** A figure a reader compares as a ratio: each version after the reference is labelled with it too, e.g. "299 KiB · 0.28× v1". */
function ratioPanel(report: EvalReport, title: string, figureOf: (evaluation: VersionEvaluation) => number, format: (value: number) => string): BarPanel {
  const [first] = report.versions;
  const reference = figureOf(first);
  return {
    title,
    scaleMax: Math.max(...report.versions.map(figureOf)),
    bars: report.versions.map((evaluation, index) => {
      const value = figureOf(evaluation);
      // The reference's own ratio (1.00×) says nothing.
      const ratio = index > 0 && reference > 0 ? ` · ${(value / reference).toFixed(2)}× v${first.version}` : '';
      return { version: evaluation.version, value, label: `${format(value)}${ratio}` };
    }),
  };
}

function panelsOf(report: EvalReport): BarPanel[] {
  const [first] = report.versions;
  const panels: BarPanel[] = [];
  if (first.classification) {
    panels.push({
      title: 'Top-1 accuracy (against the labels)',
      scaleMax: 1,
      bars: report.versions.map((evaluation) => ({ version: evaluation.version, value: evaluation.classification?.top1Accuracy, label: formatPercent(evaluation.classification?.top1Accuracy ?? NaN) })),
    });
  }
  if (first.text) {
    panels.push({
      title: 'Lines read exactly (against the labels)',
      scaleMax: 1,
      bars: report.versions.map((evaluation) => ({ version: evaluation.version, value: evaluation.text?.lineAccuracy, label: formatPercent(evaluation.text?.lineAccuracy ?? NaN) })),
    });
  }
  if (report.versions.length > 1) {
    const measure = report.versions[1].agreement?.measure ?? 'top-1';
    panels.push({
      title: measure === 'mean IoU' ? `Mean IoU with v${first.version}` : `Agreement with v${first.version} (${measure})`,
      scaleMax: 1,
      bars: report.versions.map((evaluation, index) => ({
        version: evaluation.version,
        value: evaluation.agreement?.agreement,
        label: index === 0 ? 'reference' : formatPercent(evaluation.agreement?.agreement ?? NaN),
      })),
    });
  }
  panels.push(ratioPanel(report, 'Throughput, examples/s (higher is faster)', (evaluation) => evaluation.examplesPerSecond, formatRate));
  if (report.versions.every((evaluation) => evaluation.sizeBytes !== undefined)) panels.push(ratioPanel(report, 'Model file size', (evaluation) => evaluation.sizeBytes!, formatSize));
  return panels;
}

function gateBanner(report: EvalReport, y: number): Block {
  const gate = report.gate!;
  const first = report.versions[0].version;
  const last = report.versions[report.versions.length - 1].version;
  const maxChars = Math.floor((WIDTH - 2 * MARGIN - 24) / (13 * CHAR_WIDTH));
  const heading = wrapText(`Gate "${gate.spec}", v${last} against v${first}: ${gate.passed ? 'PASSED' : 'FAILED'}`, maxChars);
  const failures = gate.failures.flatMap((failure) => wrapText(failure, maxChars - 4).map((line, index) => (index === 0 ? `✗ ${line}` : `   ${line}`)));
  const lines = [...heading, ...failures];
  const height = 14 + lines.length * 19;
  const [fill, stroke, ink] = gate.passed ? ['#e8f5e9', '#2e7d32', '#1b5e20'] : ['#fdecea', '#c62828', '#b71c1c'];
  const svg = [`<rect x="${MARGIN}" y="${y}" width="${WIDTH - 2 * MARGIN}" height="${height}" fill="${fill}" stroke="${stroke}" stroke-width="2"/>`];
  lines.forEach((line, index) => svg.push(text(MARGIN + 12, y + 24 + index * 19, line, { size: 13, bold: index < heading.length, fill: ink })));
  return { svg, height };
}

/** Light to dark blue as a share goes from 0 to 1; by its square root, so that the few confusions worth seeing are not near-white. */
function shade(share: number): string {
  const depth = Math.sqrt(share);
  const light = [247, 251, 255];
  const dark = [8, 81, 156];
  const channel = (index: number) => Math.round(light[index] + (dark[index] - light[index]) * depth).toString(16).padStart(2, '0');
  return `#${channel(0)}${channel(1)}${channel(2)}`;
}

function confusionHeatMap(report: EvalReport, y: number): Block {
  const last = report.versions[report.versions.length - 1];
  const confusion = last.classification!.confusion;
  const classes = confusion.length;
  const svg = [text(MARGIN, y + 18, `Confusion of v${last.version}: rows are labels, columns predicted classes (by index)`, { size: 14, bold: true })];
  svg.push(text(MARGIN, y + 38, "Counts in the cells (blank: none); the darker, the larger the share of the label's images predicted as that class.", { size: 12, fill: '#555' }));
  const cell = Math.max(24, Math.min(44, Math.floor(520 / classes)));
  const countSize = Math.min(12, Math.floor(cell * 0.4));
  const rowLabels = report.classes!.slice(0, classes).map((name, index) => truncate(`${index} ${name}`, 24));
  while (rowLabels.length < classes) rowLabels.push(String(rowLabels.length));
  const gridX = MARGIN + Math.ceil(Math.max(...rowLabels.map((label) => textWidth(label, 12)))) + 10;
  const gridY = y + 84;
  svg.push(text(gridX + (cell * classes) / 2, gridY - 26, 'predicted class', { size: 12, anchor: 'middle', fill: '#555' }));
  for (let column = 0; column < classes; column++) svg.push(text(gridX + column * cell + cell / 2, gridY - 6, String(column), { size: 12, anchor: 'middle' }));
  confusion.forEach((row, label) => {
    const top = gridY + label * cell;
    svg.push(text(gridX - 8, top + cell / 2 + 4, rowLabels[label], { size: 12, anchor: 'end' }));
    const support = row.reduce((sum, count) => sum + count, 0);
    row.forEach((count, predicted) => {
      const share = support ? count / support : 0;
      const left = gridX + predicted * cell;
      svg.push(`<rect x="${left}" y="${top}" width="${cell}" height="${cell}" fill="${shade(share)}" stroke="${label === predicted ? '#444' : '#e0e0e0'}"/>`);
      if (count > 0) svg.push(text(left + cell / 2, top + cell / 2 + countSize / 2 - 1, String(count), { size: countSize, anchor: 'middle', fill: Math.sqrt(share) > 0.6 ? '#fff' : '#222' }));
    });
  });
  return { svg, height: gridY - y + classes * cell + 10 };
}

/** The comparison of a report's versions as a standalone SVG document. */
export function comparisonChartSvg(report: EvalReport): string {
  if (report.versions.length === 0) throw new Error('the report has no version to chart');
  const body: string[] = [];
  const first = report.versions[0];
  const labelling = first.classification ? `${report.classes!.length} classes` : first.text ? 'labelled with text' : 'unlabelled (agreement only)';
  const title = `model ${report.model}: ${report.examples} examples, ${labelling}`;
  let y = MARGIN;
  for (const line of wrapText(title, Math.floor((WIDTH - 2 * MARGIN) / (20 * CHAR_WIDTH)))) {
    y += 24;
    body.push(text(MARGIN, y, line, { size: 20, bold: true }));
  }
  y += 22;
  const versions = report.versions.map((evaluation) => `v${evaluation.version}`).join(', ');
  body.push(text(MARGIN, y, `nereid eval, versions ${versions} side by side; v${first.version} is the reference.`, { fill: '#555' }));
  y += 16;
  if (report.gate) {
    const banner = gateBanner(report, y);
    body.push(...banner.svg);
    y += banner.height + GAP;
  } else {
    y += 8;
  }
  const colours = new Map(report.versions.map((evaluation, index) => [evaluation.version, PALETTE[index % PALETTE.length]]));
  const colourOf = (version: string) => colours.get(version)!;
  const panelWidth = (WIDTH - 2 * MARGIN - GAP) / 2;
  const panels = panelsOf(report);
  for (let index = 0; index < panels.length; index += 2) {
    const row = panels.slice(index, index + 2).map((panel, column) => barPanel(panel, MARGIN + column * (panelWidth + GAP), y, panelWidth, colourOf));
    for (const panel of row) body.push(...panel.svg);
    y += Math.max(...row.map((panel) => panel.height)) + GAP;
  }
  const classification = report.versions[report.versions.length - 1].classification;
  if (classification && classification.confusion.length <= MAX_HEAT_MAP_CLASSES) {
    const heatMap = confusionHeatMap(report, y);
    body.push(...heatMap.svg);
    y += heatMap.height + GAP;
  } else if (classification) {
    body.push(text(MARGIN, y + 14, `Confusion matrix left out: ${classification.confusion.length} classes are more than a chart keeps legible (${MAX_HEAT_MAP_CLASSES}); nereid eval --json has it.`, { size: 12, fill: '#555' }));
    y += 14 + GAP;
  }
  const height = Math.round(y - GAP + MARGIN);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${FONT}" role="img">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** The chart as the bytes of an SVG or PNG file. */
export async function renderComparisonChart(report: EvalReport, format: ChartFormat): Promise<Buffer> {
  const svg = Buffer.from(comparisonChartSvg(report));
  if (format === 'svg') return svg;
  const sharp = await loadSharp();
  return sharp(svg, { density: 72 * PNG_SCALE }).png().toBuffer();
}

/** Writes the chart to `path`, as SVG or PNG by its extension. */
export async function writeComparisonChart(report: EvalReport, path: string): Promise<void> {
  await writeFile(path, await renderComparisonChart(report, chartFormatOf(path)));
}
