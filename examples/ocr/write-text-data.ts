/**
 * Writes evaluation and calibration data for the bundled PaddleOCR models as batch-job JSONL:
 * lines of real text (the GPL's and Apache licence's sentences, by default) rendered with Pango through sharp, as the
 * recogniser's input tensor with the text as `label` (recognition.jsonl), and pages of a few such
 * lines as the detector's input (detection.jsonl). Fonts and sizes vary from line to line so the
 * set is not one typeface at one scale.
 *
 *   npx tsx examples/ocr/write-text-data.ts --out DIR [--lines 300] [--pages 40] [--text FILE]... [--skip 0]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { recognitionInput, renderTextLine, type Fp32Tensor } from '../../test/support/ocr.js';

const FONTS = ['DejaVu Sans', 'DejaVu Serif', 'DejaVu Sans Mono'];
const DPIS = [96, 110, 130];
/** PaddleOCR's detector normalisation (ImageNet's mean and std), per RGB channel. */
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** A record line of the V2 inputs form, values rounded to what float32 from 8-bit pixels needs. */
function record(tensor: Fp32Tensor, label?: string): string {
  const data = Array.from(tensor.data, (value) => Math.round(value * 1e5) / 1e5);
  const inputs = [{ name: 'x', datatype: 'FP32', shape: tensor.shape, data }];
  return JSON.stringify(label === undefined ? { inputs } : { inputs, label });
}

/** Text lines from plain-text files: paragraphs' words wrapped at 48 characters, lines of 8 or more, printable ASCII, each once. */
export async function textLines(paths: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  for (const path of paths) {
    for (const paragraph of (await readFile(path, 'utf8')).split(/\n\s*\n/)) {
      let line = '';
      for (const word of paragraph.split(/\s+/).filter(Boolean)) {
        if (line && line.length + 1 + word.length > 48) {
          lines.push(line);
          line = '';
        }
        line = line ? `${line} ${word}` : word;
      }
      if (line) lines.push(line);
    }
  }
  return [...new Set(lines.filter((line) => line.length >= 8 && line.length <= 48 && /^[\x20-\x7e]+$/.test(line)))];
}

/** A page: lines stacked on white, padded to sides that are multiples of 32, normalised for the detector. */
async function page(lines: readonly string[], index: number): Promise<Fp32Tensor> {
  const rendered = await Promise.all(lines.map((line, at) => renderTextLine(line, { font: FONTS[(index + at) % FONTS.length], dpi: DPIS[(index + at) % DPIS.length], margin: 12 })));
  const width = Math.ceil(Math.max(...rendered.map((line) => line.width)) / 32) * 32;
  const height = Math.ceil(rendered.reduce((sum, line) => sum + line.height, 0) / 32) * 32;
  let top = 0;
  const composite = rendered.map((line) => {
    const placed = { input: line.data, raw: { width: line.width, height: line.height, channels: 3 as const }, top, left: 0 };
    top += line.height;
    return placed;
  });
  const { data } = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite(composite).raw().toBuffer({ resolveWithObject: true });
  const tensor = new Float32Array(3 * width * height);
  for (let pixel = 0; pixel < width * height; pixel++) {
    for (let c = 0; c < 3; c++) tensor[c * width * height + pixel] = (data[pixel * 3 + c] / 255 - MEAN[c]) / STD[c];
  }
  return { data: tensor, shape: [1, 3, height, width] };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      lines: { type: 'string', default: '300' },
      pages: { type: 'string', default: '40' },
      skip: { type: 'string', default: '0' },
      text: { type: 'string', multiple: true, default: ['/usr/share/common-licenses/GPL-3', '/usr/share/common-licenses/Apache-2.0'] },
    },
  });
  if (!values.out) throw new Error('--out DIR is required');
  await mkdir(values.out, { recursive: true });
  const all = (await textLines(values.text!)).slice(Number(values.skip));
  if (all.length < Number(values.lines)) throw new Error(`the text gives ${all.length} lines after --skip; ask for fewer or add --text files`);
  const lines = all.slice(0, Number(values.lines));
  const recognition: string[] = [];
  for (const [index, line] of lines.entries()) {
    const image = await renderTextLine(line, { font: FONTS[index % FONTS.length], dpi: DPIS[index % DPIS.length] });
    recognition.push(record(await recognitionInput(image), line));
  }
  await writeFile(join(values.out, 'recognition.jsonl'), `${recognition.join('\n')}\n`);
  const detection: string[] = [];
  for (let index = 0; index < Number(values.pages); index++) {
    const start = (index * 3) % Math.max(1, all.length - 3);
    detection.push(record(await page(all.slice(start, start + 3), index)));
  }
  await writeFile(join(values.out, 'detection.jsonl'), `${detection.join('\n')}\n`);
  console.log(`${values.out}: recognition.jsonl (${recognition.length} lines of text), detection.jsonl (${detection.length} pages)`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
