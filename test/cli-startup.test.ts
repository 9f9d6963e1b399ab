/**
 * Each `nereid` command loads the machinery it runs when it runs: help, and a command refused for its flags, start
 * without Fastify, gRPC, Prometheus, ONNX Runtime or the Redis queue (about a second of start-up each), while serve's
 * action loads its front ends — the control that shows the check sees a package when it is loaded.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NEREID_COMMAND } from './support/cli-server.js';

/** Packages only serving (or running a model) needs. */
const HEAVY = ['fastify', '@grpc/grpc-js', 'prom-client', 'onnxruntime-node', 'bullmq', 'ioredis', 'sharp'];

/** Prints, as the process exits, the npm packages it loaded through require (every one of HEAVY is CommonJS). */
const PROBE = `
import { createRequire } from 'node:module';
process.on('exit', () => {
  const loaded = Object.keys(createRequire(import.meta.url).cache).map((path) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(path)?.[1]);
  process.stderr.write('\\nLOADED ' + JSON.stringify([...new Set(loaded.filter(Boolean))]) + '\\n');
});
`;

async function heavyPackagesLoadedBy(probe: string, args: string[]): Promise<{ heavy: string[]; stderr: string }> {
  const stderr = await new Promise<string>((resolve) => execFile(process.execPath, ['--import', probe, ...NEREID_COMMAND, ...args], (_error, _stdout, stderr) => resolve(stderr)));
  const line = stderr.split('\n').find((text) => text.startsWith('LOADED '));
  assert.ok(line, `the probe reported: ${stderr}`);
  const loaded = JSON.parse(line.slice('LOADED '.length)) as string[];
  return { heavy: HEAVY.filter((name) => loaded.includes(name)), stderr };
}

test('help and a command refused for its flags load no server, engine or queue machinery; serve loads its front ends', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-cli-startup-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const probe = join(dir, 'probe.mjs');
  await writeFile(probe, PROBE);
  for (const args of [['--help'], ['serve', '--help'], ['eval', '--help'], ['batch', 'cancel', '--job', 'j'], ['tune', '--model', 'm', '--write', '--dry-run']]) {
    const { heavy, stderr } = await heavyPackagesLoadedBy(probe, args);
    assert.deepEqual(heavy, [], `nereid ${args.join(' ')}: ${stderr}`);
  }
  // The control: serve's action loads its front ends before it checks its flags against each other.
  const { heavy, stderr } = await heavyPackagesLoadedBy(probe, ['serve', '--dashboard', 'false', '--dashboard-port', '1']);
  assert.match(stderr, /--dashboard-port serves the dashboard: it cannot go with --dashboard false/);
  for (const name of ['fastify', '@grpc/grpc-js', 'prom-client']) assert.ok(heavy.includes(name), `serve loads ${name}: ${heavy.join(', ')}`);
});

test('from a clone, `npm run -s nereid -- …` runs the command, with nothing but its output on stdout', { timeout: 180_000 }, async () => {
  const root = new URL('..', import.meta.url);
  const { version } = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as { version: string };
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile('npm', ['run', '-s', 'nereid', '--', '--version'], { cwd: root }, (error, out) => (error ? reject(error) : resolve(out))),
  );
  assert.equal(stdout, `${version}\n`);
});
