/**
 * Built-in handler models (backend "builtin"): pipelines whose code ships with Nereid, such as the
 * bundled OCR application, named by the config (`parameters: { handler: ocr }`) from this file's
 * table. They run as JavaScript handlers do (a worker thread per instance, context.infer through
 * the server's path), but the code is the server's own, never a file of the model repository, so
 * they load without --allow-code-models and a repository cannot make them run anything else.
 */
import { fileURLToPath } from 'node:url';
import type { Backend, BackendInstance, InstanceOptions, ModelSignature } from '../backends/backend.js';
import { JavaScriptBackend } from '../backends/javascript-backend.js';
import { parameterStrings, parameterValue, type ModelConfig } from '../config/model-config.js';
import { ocrParameters } from './ocr/ocr-parameters.js';

interface BuiltinHandler {
  /** The handler module, relative to this file, without its extension. */
  module: string;
  /** The models the handler calls, from the config's parameters; throws what is wrong with them. */
  stepModels(parameters: Record<string, string | undefined>): string[];
}

const HANDLERS: Readonly<Record<string, BuiltinHandler>> = {
  ocr: {
    module: './ocr/ocr-handler',
    stepModels: (parameters) => {
      const settings = ocrParameters(parameters);
      return [settings.detection_model, settings.direction_model, settings.recognition_model].filter((model) => model !== 'none');
    },
  },
};

// From source the worker imports the .ts module (it registers tsx's loader itself); once built, the .js beside this file.
const EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

export class BuiltinBackend implements Backend {
  readonly name = 'builtin';
  readonly platforms = [] as const;
  /** There is no model file: the version folder (1/) stays empty. */
  readonly defaultModelFilename = '';
  private readonly handlers = new JavaScriptBackend();
  readonly tuningParameters = this.handlers.tuningParameters;

  private handlerOf(config: ModelConfig): BuiltinHandler {
    const name = parameterValue(config, 'handler');
    const known = Object.keys(HANDLERS).join(', ');
    if (name === undefined) throw new Error(`a builtin model names its handler in its parameters (handler: one of ${known})`);
    if (!Object.hasOwn(HANDLERS, name)) throw new Error(`parameter handler '${name}' is not a built-in handler (there are: ${known})`);
    return HANDLERS[name];
  }

  checkConfig(config: ModelConfig): void {
    this.handlers.checkConfig(config);
    this.handlerOf(config).stepModels(parameterStrings(config));
  }

  builtinModelPath(config: ModelConfig): string {
    return fileURLToPath(new URL(`${this.handlerOf(config).module}${EXTENSION}`, import.meta.url));
  }

  stepModels(config: ModelConfig): string[] {
    return this.handlerOf(config).stepModels(parameterStrings(config));
  }

  describe(modelPath: string, config: ModelConfig): Promise<ModelSignature> {
    return this.handlers.describe(modelPath, config);
  }

  /** An instance handles one request at a time while it waits on the models it calls: as many as the cores, at least two. */
  async defaultInstances(_modelPath: string, _config: ModelConfig, cores: number): Promise<{ count: number; threadsPerInstance: number }> {
    return { count: Math.min(8, Math.max(2, cores)), threadsPerInstance: 1 };
  }

  createInstance(modelPath: string, config: ModelConfig, options: InstanceOptions): Promise<BackendInstance> {
    return this.handlers.createInstance(modelPath, config, options);
  }
}
