/**
 * Pre-processing of one model version's inputs, as its config declares it: inputs with
 * `preprocess.image` take encoded images (BYTES, one per batch row) from clients and become the
 * tensors the model takes. Built once per version; absent when no input declares pre-processing.
 */
import { datatypeOfConfig, type CompletedModelConfig } from '../config/model-config.js';
import { bytesElements } from '../core/datatype.js';
import type { CancelSignal } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { ImagePreprocessor } from './image-preprocessor.js';

export class InputPreprocessor {
  /** Inputs that take encoded images. */
  readonly imageInputs: ReadonlySet<string>;

  private constructor(
    private readonly images: ReadonlyMap<string, ImagePreprocessor>,
    /** Inputs whose tensor keeps the images' row dimension: every input of a batching model, and a non-batching one's [1, …] image. */
    private readonly withRows: ReadonlySet<string>,
  ) {
    this.imageInputs = new Set(images.keys());
  }

  /** The pre-processing a config declares, or undefined when it declares none. */
  static of(config: CompletedModelConfig): InputPreprocessor | undefined {
    const batched = config.max_batch_size > 0;
    const withRows = new Set<string>();
    const images = new Map(
      config.input
        .filter((input) => input.preprocess?.image)
        .map((input) => {
          let dims = input.reshape?.shape ?? input.dims;
          // A graph exported for one image at a time ([1, H, W, C], no batching): the leading 1 is that image's row.
          if (!batched && dims.length === 4 && dims[0] === 1) dims = dims.slice(1);
          if (batched || dims !== (input.reshape?.shape ?? input.dims)) withRows.add(input.name);
          return [input.name, new ImagePreprocessor(input.name, input.preprocess!.image, datatypeOfConfig(input), dims)];
        }),
    );
    return images.size > 0 ? new InputPreprocessor(images, withRows) : undefined;
  }

  /** The config as clients see it: an image input takes BYTES [1] per row, the encoded image. */
  clientConfig(config: CompletedModelConfig): CompletedModelConfig {
    return {
      ...config,
      input: config.input.map((input) => (this.images.has(input.name) ? { ...input, data_type: 'TYPE_STRING', dims: [1], reshape: undefined } : input)),
    };
  }

  /** The model's tensors from the client's: images decoded, resized and normalised (in libvips' threads). */
  async run(tensors: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    return (await this.runMeasured(tensors, false)).inputs;
  }

  /**
   * As run, and with `measure` the properties of the first image input's images, per row (see ImagePreprocessor.runMeasured).
   * `signal`: the request's; its images still waiting for a decode are skipped once it fires.
   */
  async runMeasured(tensors: Record<string, Tensor>, measure = true, signal?: CancelSignal): Promise<{ inputs: Record<string, Tensor>; properties?: Record<string, number>[] }> {
    const inputs = { ...tensors };
    let properties: Record<string, number>[] | undefined;
    await Promise.all(
      [...this.images].map(async ([name, preprocessor], index) => {
        const measured = await preprocessor.runMeasured(bytesElements(tensors[name].data), measure && index === 0, signal);
        inputs[name] = this.withRows.has(name) ? measured.tensor : { ...measured.tensor, shape: measured.tensor.shape.slice(1) };
        if (measured.properties) properties = measured.properties;
      }),
    );
    return { inputs, properties };
  }
}
