/** A chart's file format, read from its name: the CLI checks it before a long run without loading the chart's drawing. */
import { extname } from 'node:path';

export type ChartFormat = 'svg' | 'png';

/** The chart's format from its file name; anything but .svg or .png is refused, naming both. */
export function chartFormatOf(path: string): ChartFormat {
  const extension = extname(path).toLowerCase();
  if (extension === '.svg' || extension === '.png') return extension.slice(1) as ChartFormat;
  throw new Error(`A chart is written as .svg (vector) or .png (image); '${path}' ${extension === '' ? 'has no extension' : `ends in '${extension}'`}`);
}
