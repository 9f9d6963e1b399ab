/**
 * Data given to the tools that run a model in process (quantize's calibration, profile, monitor,
 * bench) read as the model's own input tensors, one example per row, with a digest that identifies
 * the data.
 */
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import type { CompletedModelConfig } from '../config/model-config.js';
import { onnxTypeOf, type Datatype } from '../core/datatype.js';
import { ImageInputError } from '../processing/image-preprocessor.js';
import { InputPreprocessor } from '../processing/input-preprocessor.js';
import type { Server } from '../server/server.js';
import { openInput } from './input-source.js';
import { LABEL_COLUMN } from './record-columns.js';
import { RecordProcessor } from './record-processor.js';

export type Feed = Record<string, ort.Tensor>;

export interface ModelInputs {
  feeds: Feed[];
  /** Each example's record id (an image's path in the folder, a line number), in the order of `feeds`. */
  ids: (string | number)[];
  /** Encoded images, in the order of `feeds`, when the data is a folder of images. */
  images?: Buffer[];
  sha256: string;
  /**
   * Each example's value of the data's label column (LABEL_COLUMN of a CSV or Parquet file, e.g. a Hugging Face image
   * dataset's `label`), in the order of `feeds`; absent when the data have no such column.
   */
  labelValues?: unknown[];
  /** Images left out because they could not be read or decoded (only with `skipUnreadable`), by record id. */
  unreadable: { id: string | number; reason: string }[];
}

/**
 * At most `limit` examples of a folder of images, a JSONL, CSV or Parquet file (evenly spaced through it
 * when it holds more) as the model's input tensors: images through the model's own pre-processing, JSONL and CSV records read as `nereid
 * batch` reads them. Each example is one row. `flag` names the option the path came from, in errors.
 * An image that cannot be read or decoded stops the reading, or with `skipUnreadable` is left out and listed.
 */
export async function readModelInputs(
  path: string,
  limit: number,
  server: Server,
  model: string,
  config: CompletedModelConfig,
  flag = '--data',
  skipUnreadable = false,
): Promise<ModelInputs> {
  const source = await openInput(path, { labelColumn: LABEL_COLUMN }).catch((error: Error) => {
    throw new Error(`${flag}: ${error.message}`);
  });
  const digest = createHash('sha256');
  const feeds: Feed[] = [];
  const ids: (string | number)[] = [];
  const images: Buffer[] = [];
  const labelValues: unknown[] = [];
  const unreadable: ModelInputs['unreadable'] = [];
  const preprocessor = InputPreprocessor.of(config);
  const [imageInput, ...otherImages] = preprocessor ? [...preprocessor.imageInputs] : [];
  // A Parquet file whose column holds encoded images (Hugging Face's layout) is read as a folder of them is.
  const holdsImages = source.format === 'images' || source.imageColumn !== undefined;
  const whatHoldsImages = source.format === 'images' ? 'is a folder of images' : `holds images (column '${source.imageColumn}')`;
  if (holdsImages && (!preprocessor || !imageInput || otherImages.length > 0 || config.input.length !== 1)) {
    throw new Error(`${flag} ${path} ${whatHoldsImages}, but model '${model}' does not take a single image input with preprocess.image; give a JSONL, CSV or Parquet file of its input tensors`);
  }
  if (!holdsImages && preprocessor) {
    throw new Error(`${flag} ${path} is a ${source.format} file of tensors, but model '${model}' takes encoded images (preprocess.image); give a folder of images, or a Parquet file with a column of them`);
  }
  const processor = holdsImages ? undefined : RecordProcessor.create(server, { model });
  // Records are checked as the model's requests are: a tool that runs ONNX Runtime on them directly (quantize's
  // calibration) would otherwise take tensors the model, served, refuses.
  const checkShape = server.inputShapeCheck(model);
  const asOrt = (datatype: Datatype, data: unknown, shape: readonly number[]) => new ort.Tensor(onnxTypeOf(datatype) as 'float32', data as Float32Array, [...shape]);
  // More records than asked for: every k-th, evenly through the input, so a folder sorted class by class still gives every class.
  const total = await source.count();
  const stride = total > limit ? total / limit : 1;
  let position = 0;
  let next = 0;
  for await (const entry of source.records()) {
    if (feeds.length >= limit) break;
    if (position++ < Math.round(next)) continue;
    next += stride;
    const record = await entry.load();
    const where = `${flag} ${path}, record ${record.id}`;
    if (record.error !== undefined && skipUnreadable && holdsImages) {
      unreadable.push({ id: record.id, reason: record.error });
      continue;
    }
    if (record.error !== undefined) throw new Error(`${where}: ${record.error}`);
    if (record.image) {
      const prepared = await preprocessor!.run({ [imageInput]: { datatype: 'BYTES', shape: [1, 1], data: [record.image] } }).catch((error: Error) => {
        const reason = error instanceof ImageInputError ? error.reason : error.message;
        // Only an image that does not decode is the file's fault; any other failure would be every file's.
        if (skipUnreadable && error instanceof ImageInputError) return void unreadable.push({ id: record.id, reason });
        throw new Error(`${where}: ${reason}`, { cause: error });
      });
      if (!prepared) continue;
      digest.update(createHash('sha256').update(record.image).digest());
      const tensor = prepared[imageInput];
      feeds.push({ [imageInput]: asOrt(tensor.datatype, tensor.data, config.max_batch_size > 0 ? tensor.shape : [1, ...tensor.shape]) });
      ids.push(record.id);
      labelValues.push(record.label);
      images.push(record.image);
      continue;
    }
    digest.update(createHash('sha256').update(record.json ?? JSON.stringify(record.fields)).digest());
    let request;
    try {
      request = processor!.request(record);
      for (const input of request.inputs) checkShape(input);
    } catch (error) {
      throw new Error(`${where}: ${(error as Error).message}`);
    }
    feeds.push(Object.fromEntries(request.inputs.map((input) => [input.name, asOrt(input.datatype, input.data, input.shape)])));
    ids.push(record.id);
    labelValues.push(record.label);
  }
  const labelled = labelValues.some((label) => label !== undefined);
  return { feeds, ids, images: holdsImages ? images : undefined, ...(labelled ? { labelValues } : {}), sha256: digest.digest('hex'), unreadable };
}
