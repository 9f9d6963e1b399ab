/**
 * Writes a small model repository of tensor models and the input files the batch-job and JavaScript-handler docs use
 * (the bundled repository's models take images; these take plain tensors):
 *
 *   DIR/models/simple   Triton's add/sub example: INT32 INPUT0 [16], INPUT1 [16] → OUTPUT0 = sum, OUTPUT1 = difference
 *   DIR/models/double   FP32 INPUT0 [4] → OUTPUT0 = 2 × INPUT0
 *   DIR/models/triple   FP32 INPUT0 [4] → OUTPUT0 = 3 × INPUT0
 *   DIR/models/quintuple FP32 INPUT0 [4] → OUTPUT0 = 5 × INPUT0 (docs/ensembles.md's third step)
 *   DIR/requests.jsonl  four records for `simple`, one per JSONL form (a V2 inputs array, a V2 request body, named
 *                       fields) and a last one whose INPUT0 holds 3 values instead of 16 (answered with an error)
 *   DIR/table.csv       rows for `double`: `id,a,b,c,d,label`
 *
 *   npx tsx examples/tensors/write-examples.ts [--out tensors]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { addSubConfig, addSubModel, scaleModel, writeModel } from '../../src/onnx/test-models.js';

const SIMPLE_CONFIG = addSubConfig('simple', { extra: 'dynamic_batching { max_queue_delay_microseconds: 2000 }\n' });

const scaleConfig = (name: string): string => `name: "${name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
`;

export async function writeTensorExamples(out: string): Promise<void> {
  const models = join(out, 'models');
  await writeModel(models, 'simple', 1, addSubModel(), SIMPLE_CONFIG);
  await writeModel(models, 'double', 1, scaleModel(2), scaleConfig('double'));
  await writeModel(models, 'triple', 1, scaleModel(3), scaleConfig('triple'));
  await writeModel(models, 'quintuple', 1, scaleModel(5), scaleConfig('quintuple'));
  const ones = Array.from({ length: 16 }, () => 1);
  const counting = Array.from({ length: 16 }, (_, index) => index);
  const tensor = (name: string, data: number[]) => ({ name, datatype: 'INT32', shape: [1, 16], data });
  const requests = [
    [tensor('INPUT0', counting), tensor('INPUT1', ones)],
    { inputs: [tensor('INPUT0', ones), tensor('INPUT1', counting)], outputs: [{ name: 'OUTPUT0' }] },
    { INPUT0: counting, INPUT1: counting, label: 'named fields: not an input, ignored' },
    { INPUT0: [1, 2, 3], INPUT1: counting },
  ];
  await writeFile(join(out, 'requests.jsonl'), `${requests.map((request) => JSON.stringify(request)).join('\n')}\n`);
  await writeFile(join(out, 'table.csv'), 'id,a,b,c,d,label\nr1,1,2,3,4,small\nr2,10,20,30,40,large\nr3,0.5,0.25,0.125,0,tiny\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'tensors' } } });
  await mkdir(values.out!, { recursive: true });
  await writeTensorExamples(values.out!);
  console.log(`${values.out}: models/ (simple, double, triple, quintuple), requests.jsonl, table.csv`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
