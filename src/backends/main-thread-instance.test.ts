/** The instance that runs ONNX Runtime on the JS thread (execution_thread main), through the shared BackendInstance suite. */
import assert from 'node:assert/strict';
import { parseModelConfig } from '../config/model-config.js';
import { backendInstanceConformance, TEST_INSTANCE_OPTIONS } from './backend-instance.case.js';
import { OnnxRuntimeBackend } from './onnx-runtime-backend.js';

backendInstanceConformance(
  'MainThreadInstance',
  async (modelPath) => {
    const config = parseModelConfig({ parameters: { execution_thread: 'main' } }, 'test');
    const instance = await new OnnxRuntimeBackend().createInstance(modelPath, config, TEST_INSTANCE_OPTIONS);
    assert.equal(instance.constructor.name, 'MainThreadInstance', 'execution_thread main runs on the JS thread');
    return instance;
  },
  { describe: (modelPath) => new OnnxRuntimeBackend().describe(modelPath) },
);
