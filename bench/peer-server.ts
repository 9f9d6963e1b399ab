/**
 * "The peer": what a user would write instead of Nereid. A plain fastify server that reads the V2
 * body (JSON, or Triton's binary tensor data) with minimal parsing and calls session.run once per
 * request: no batching, no validation, no statistics. Started as a child process by bench/run.ts:
 *   node --import tsx bench/peer-server.ts --model model.onnx --port 8123
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import * as ort from 'onnxruntime-node';
import { elementType, jsonValues, ORT_TYPE_OF_V2, typedFromBytes } from './tensors.js';

const { values } = parseArgs({
  options: { model: { type: 'string' }, port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } },
});
if (!values.model || !values.port) throw new Error('usage: peer-server.ts --model FILE.onnx --port N');

const session = await ort.InferenceSession.create(values.model, {
  intraOpNumThreads: availableParallelism(),
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
});

interface V2Input {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
}
interface V2Header {
  id?: string;
  inputs: V2Input[];
  outputs?: { name: string; parameters?: { binary_data?: boolean } }[];
}

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

app.get('/v2/health/ready', async (_request, reply) => reply.code(200).send());

app.post('/v2/models/:model/infer', async (request, reply) => {
  const body = request.body as Buffer;
  const headerLength = request.headers['inference-header-content-length'];
  const jsonLength = headerLength === undefined ? body.length : Number(headerLength);
  const header = JSON.parse(body.toString('utf8', 0, jsonLength)) as V2Header;
  let offset = jsonLength;
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of header.inputs) {
    const ortType = ORT_TYPE_OF_V2[input.datatype];
    const size = input.parameters?.binary_data_size;
    let data;
    if (size !== undefined) {
      data = typedFromBytes(ortType, body.subarray(offset, offset + size));
      offset += size;
    } else {
      data = elementType(ortType).fromJson(input.data ?? []);
    }
    feeds[input.name] = new ort.Tensor(ortType as ort.Tensor.Type, data as ort.Tensor.DataType, input.shape);
  }
  const wanted = header.outputs?.map((output) => output.name) ?? session.outputNames;
  const results = await session.run(feeds, wanted);
  const binary = new Set(header.outputs?.filter((output) => output.parameters?.binary_data).map((output) => output.name));
  const chunks: Buffer[] = [];
  const outputs = wanted.map((name) => {
    const tensor = results[name];
    const base = { name, datatype: elementType(tensor.type).v2, shape: tensor.dims };
    const data = tensor.data as Float32Array;
    if (!binary.has(name)) return { ...base, data: jsonValues(tensor.type, data) };
    chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return { ...base, parameters: { binary_data_size: data.byteLength } };
  });
  const json = { model_name: (request.params as { model: string }).model, model_version: '1', id: header.id, outputs };
  if (chunks.length === 0) return reply.type('application/json').send(JSON.stringify(json));
  const head = Buffer.from(JSON.stringify(json));
  return reply
    .type('application/octet-stream')
    .header('inference-header-content-length', String(head.length))
    .send(Buffer.concat([head, ...chunks]));
});

const stop = async () => {
  await app.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
await app.listen({ host: values.host, port: Number(values.port) });
