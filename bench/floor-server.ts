/**
 * "The floor": fastify reading the same request bodies and answering a constant small JSON, so a
 * cell's cost is HTTP, body reading and the load generator only. Started by bench/run.ts:
 *   node --import tsx bench/floor-server.ts --port 8124
 */
import { parseArgs } from 'node:util';
import Fastify from 'fastify';

const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } } });
if (!values.port) throw new Error('usage: floor-server.ts --port N');

const ANSWER = JSON.stringify({ model_name: 'floor', model_version: '1', outputs: [] });

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
app.get('/v2/health/ready', async (_request, reply) => reply.code(200).send());
app.post('/v2/models/:model/infer', async (_request, reply) => reply.type('application/json').send(ANSWER));

const stop = async () => {
  await app.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
await app.listen({ host: values.host, port: Number(values.port) });
