/** Commands that read or rewrite a model's ONNX file (quantize, profile, monitor) refuse another backend's model up front. */
import { ONNX_RUNTIME_BACKEND } from '../backends/onnx-runtime-backend.js';
import type { Server } from '../server/server.js';

/**
 * Refuses a model that ONNX Runtime does not serve, from its config files and before it loads (so a code model's code
 * never runs); `need` says what the command does with the ONNX file.
 */
export async function requireOnnxRuntimeModel(server: Server, model: string, need: string): Promise<void> {
  const backend = await server.modelBackend(model);
  if (backend !== ONNX_RUNTIME_BACKEND) throw new Error(`model '${model}' is served by backend '${backend}'; ${need}, so it works on models of backend '${ONNX_RUNTIME_BACKEND}' only`);
}
