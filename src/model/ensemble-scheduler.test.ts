/**
 * The ensemble scheduler as a Scheduler: a one-step ensemble whose step is the add/sub model behind
 * a dynamic batcher, called as the server's inference path calls a step (InferenceRequest in,
 * InferenceResponse out). Graphs of several steps are tested through the server in test/ensemble.test.ts.
 */
import { parseModelConfig } from '../config/model-config.js';
import type { InferenceRequest, InferenceResponse, RequestContext } from '../core/inference.js';
import { ModelStatistics } from '../observability/model-statistics.js';
import { DynamicBatcher, UNBATCHED_POLICY } from '../scheduler/dynamic-batcher.js';
import { schedulerConformance } from '../scheduler/scheduler.case.js';
import { planEnsemble } from './ensemble-plan.js';
import { EnsembleScheduler } from './ensemble-scheduler.js';

const tensor = (name: string) => ({ name, data_type: 'TYPE_INT32', dims: [16] });

// The ensemble's tensors carry the add/sub model's names, so the shared suite's requests and answers fit it as they are.
const plan = planEnsemble(
  'addsub_ensemble',
  parseModelConfig(
    {
      platform: 'ensemble',
      max_batch_size: 8,
      input: [tensor('INPUT0'), tensor('INPUT1')],
      output: [tensor('OUTPUT0'), tensor('OUTPUT1')],
      ensemble_scheduling: { step: [{ model_name: 'addsub', input_map: { INPUT0: 'INPUT0', INPUT1: 'INPUT1' }, output_map: { OUTPUT0: 'OUTPUT0', OUTPUT1: 'OUTPUT1' } }] },
    },
    'addsub_ensemble',
  ),
);

schedulerConformance('EnsembleScheduler', {
  make(instance) {
    const step = new DynamicBatcher([instance], { ...UNBATCHED_POLICY, maxBatchSize: 8, maxQueuedRequests: 64 }, new ModelStatistics('addsub', '1'), "model 'addsub' version 1");
    const callStep = async (request: InferenceRequest, context: RequestContext): Promise<InferenceResponse> => {
      const outputNames = request.outputs!.map((output) => output.name);
      const inputs = Object.fromEntries(request.inputs.map(({ name, ...input }) => [name, input]));
      const { outputs, timings } = await step.schedule({ inputs, batchSize: inputs.INPUT0.shape[0], outputNames, signal: context.signal, context });
      return { model: request.model, version: '1', outputs: outputNames.map((name) => ({ name, ...outputs[name] })), timings };
    };
    return new EnsembleScheduler(plan, callStep, 64);
  },
});
