/**
 * The OCR pipeline's outputs (`text`, `boxes`, `scores`, `timings`: parallel tensors, as the V2
 * protocol carries them) regrouped a line at a time, which is how a person or a script reads them:
 * `nereid ocr` prints this, in process or from a server's answer.
 */
import { PackedBytes, type TensorData } from '../../core/datatype.js';

/** An output as the core and the clients hold it: BYTES as Buffers, strings or packed; numbers as a typed array. */
interface OcrOutput {
  data: TensorData | readonly (Buffer | string)[];
}

/** BYTES elements as text, whichever form holds them. */
function strings(data: OcrOutput['data']): string[] {
  const elements = data instanceof PackedBytes ? data.elements() : Array.from(data as ArrayLike<Buffer | string | number | bigint>);
  return elements.map((value) => (typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : String(value)));
}

export interface OcrLine {
  text: string;
  /** The recogniser's mean character confidence, 0..1. */
  score?: number;
  /** The line's quadrilateral in the image's pixels, clockwise from the top-left. */
  box?: [number, number][];
}

export interface OcrAnswer {
  lines: OcrLine[];
  /** The request's time in each phase, ms, with the counts of boxes found and lines kept (the `timings` output). */
  timing?: Record<string, number>;
}

/** Rounded to hundredths: pixels and confidences finer than that are noise on a line of JSON. */
const hundredths = (value: number) => Math.round(value * 100) / 100;

/** A model's outputs as an OCR answer; throws, naming what it lacks, for a model that is not an OCR pipeline. */
export function ocrAnswerOf(model: string, outputs: Readonly<Record<string, OcrOutput | undefined>>): OcrAnswer {
  const { text, boxes, scores, timings } = outputs;
  if (!text) {
    const names = Object.keys(outputs);
    throw new Error(`model '${model}' answered no 'text' output (it answered ${names.length ? names.map((name) => `'${name}'`).join(', ') : 'nothing'}): nereid ocr reads with an OCR pipeline model (bundled: ocr)`);
  }
  const lines = strings(text.data).map((line, index): OcrLine => {
    const entry: OcrLine = { text: line };
    const score = scores ? Number((scores.data as ArrayLike<number>)[index]) : NaN;
    if (Number.isFinite(score)) entry.score = Math.round(score * 10_000) / 10_000;
    const corners = boxes?.data as ArrayLike<number> | undefined;
    if (corners && corners.length >= (index + 1) * 8) {
      entry.box = [0, 1, 2, 3].map((corner) => [hundredths(Number(corners[index * 8 + corner * 2])), hundredths(Number(corners[index * 8 + corner * 2 + 1]))]);
    }
    return entry;
  });
  const answer: OcrAnswer = { lines };
  const [timingText] = timings ? strings(timings.data) : [];
  if (timingText !== undefined) {
    try {
      answer.timing = JSON.parse(timingText);
    } catch {
      // A pipeline of another kind may put anything there; the lines are the answer.
    }
  }
  return answer;
}
