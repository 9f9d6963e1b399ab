/**
 * Writes evaluation and calibration data for the bundled PaddleOCR models as batch-job JSONL:
 * lines of real text (the GPL's and Apache licence's sentences, by default) rendered with Pango through sharp, as the
 * recogniser's input tensor with the text as `label` (recognition.jsonl), and pages of a few such
 * lines as the detector's input (detection.jsonl). Fonts and sizes vary from line to line so the
 * set is not one typeface at one scale.
 *
 *   npx tsx examples/ocr/write-text-data.ts --out DIR [--lines 300] [--pages 40] [--text FILE]... [--skip 0]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { detectionInput, inputRecord, recognitionInput, renderTextLine, textLines } from '../../test/support/ocr.js';

const FONTS = ['DejaVu Sans', 'DejaVu Serif', 'DejaVu Sans Mono'];
const DPIS = [96, 110, 130];

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
    recognition.push(inputRecord(await recognitionInput(image), line));
  }
  await writeFile(join(values.out, 'recognition.jsonl'), `${recognition.join('\n')}\n`);
  const detection: string[] = [];
  for (let index = 0; index < Number(values.pages); index++) {
    const start = (index * 3) % Math.max(1, all.length - 3);
    const page = all.slice(start, start + 3).map((line, at) => renderTextLine(line, { font: FONTS[(index + at) % FONTS.length], dpi: DPIS[(index + at) % DPIS.length], margin: 12 }));
    detection.push(inputRecord(await detectionInput(await Promise.all(page))));
  }
  await writeFile(join(values.out, 'detection.jsonl'), `${detection.join('\n')}\n`);
  console.log(`${values.out}: recognition.jsonl (${recognition.length} lines of text), detection.jsonl (${detection.length} pages)`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
