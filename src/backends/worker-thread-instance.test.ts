/** The instance that runs ONNX Runtime in a worker thread (execution_thread worker), through the shared BackendInstance suite. */
import assert from 'node:assert/strict';
import { parseModelConfig } from '../config/model-config.js';
import { backendInstanceConformance, TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { OnnxRuntimeBackend } from './onnx-runtime-backend.js';
import { WorkerThreadInstance } from './onnx-runtime-worker-instance.js';

backendInstanceConformance(
  'WorkerThreadInstance',
  async (modelPath) => {
    const config = parseModelConfig({ parameters: { execution_thread: 'worker' } }, 'test');
    const instance = await new OnnxRuntimeBackend().createInstance(modelPath, config, TEST_INSTANCE_OPTIONS);
    assert.ok(instance instanceof WorkerThreadInstance, 'execution_thread worker runs in a worker thread');
    return instance;
  },
  { describe: (modelPath) => new OnnxRuntimeBackend().describe(modelPath) },
);
