/**
 * The Dockerfile cannot be built here (no container engine), so it is linted with dockerfile-utils (the linter
 * behind VS Code's Dockerfile support), held to the invariants docs/deploy.md promises, and its default command and
 * health check are run for real against `nereid serve`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { validate } from 'dockerfile-utils';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, serveChild, stopChild } from './support/cli-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(join(ROOT, '.dockerignore'), 'utf8');

interface Instruction {
  keyword: string;
  /** The arguments as written, continuation lines joined. */
  text: string;
  line: number;
}

/** Instructions per stage, in order: comments dropped, backslash continuations joined. */
function stagesOf(dockerfile: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const lines = dockerfile.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const start = index;
    let text = lines[index]!.trim();
    if (text === '' || text.startsWith('#')) continue;
    while (text.endsWith('\\')) text = `${text.slice(0, -1).trimEnd()} ${lines[++index]!.trim()}`;
    const [keyword, ...rest] = text.split(/\s+/);
    const instruction = { keyword: keyword!.toUpperCase(), text: rest.join(' '), line: start + 1 };
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)!.push(instruction);
  }
  return stages;
}

/** The exec-form (JSON array) arguments of an instruction such as CMD ["a", "b"]. */
function execForm(instruction: Instruction | undefined): string[] {
  assert.ok(instruction, 'instruction present');
  const args: unknown = JSON.parse(instruction.text.replace(/^CMD\s+/, ''));
  assert.ok(Array.isArray(args) && args.every((arg) => typeof arg === 'string'), `${instruction.keyword} is in exec form: ${instruction.text}`);
  return args as string[];
}

const stages = stagesOf(DOCKERFILE);
const runtime = stages.at(-1)!;
const find = (stage: Instruction[], keyword: string) => stage.filter((instruction) => instruction.keyword === keyword);
const last = (stage: Instruction[], keyword: string) => find(stage, keyword).at(-1);

test('dockerfile-utils finds no problem in the Dockerfile, and would find one in a broken copy', () => {
  const problems = validate(DOCKERFILE).map((diagnostic) => `line ${diagnostic.range.start.line + 1}: ${diagnostic.message}`);
  assert.deepEqual(problems, []);
  const broken = DOCKERFILE.replace('EXPOSE 8000 8001 8002', 'EXPOSE 8000 grpc 8002');
  assert.ok(validate(broken).length > 0, 'the linter sees an invalid port');
});

test('two stages on pinned Node 20 slim images: dev dependencies and the build in the first, the runtime copies its pruned result', () => {
  assert.equal(stages.length, 2);
  for (const stage of stages) {
    const image = stage[0]!.text.split(/\s+/)[0]!;
    assert.match(image, /^node:20-[a-z]+-slim$/, `${image}: a Node 20 slim image, tagged, never latest`);
  }
  const build = stages[0]!;
  const runs = find(build, 'RUN').map((run) => run.text);
  assert.ok(runs.some((run) => run.includes('npm ci')), 'the build stage installs from the lock file');
  assert.ok(runs.some((run) => run.includes('npm run build') && run.includes('prepare-models') && run.includes('npm prune --omit=dev')));
  assert.deepEqual(find(runtime, 'RUN'), [], 'the runtime stage installs nothing: no network, no package manager at run or build time there');
  const copied = find(runtime, 'COPY').map((copy) => copy.text);
  assert.ok(copied.every((copy) => copy.startsWith('--from=build')), 'the runtime takes only the build stage output');
});

test('the runtime stage has every folder the package ships to run (package.json files, less docs and install scripts)', () => {
  const files = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] }).files;
  const shipped = files.filter((entry) => !entry.startsWith('!') && !entry.startsWith('scripts/') && entry !== 'docs');
  const copied = new Set(find(runtime, 'COPY').map((copy) => copy.text.split(/\s+/).find((word) => word.startsWith('/app/'))?.slice('/app/'.length)));
  for (const entry of shipped) assert.ok(copied.has(entry), `${entry} is in the package but not in the image: the server reads it at run time`);
});

test("onnxruntime-node's CUDA download is skipped as in .npmrc (no dependency install scripts), before npm ci", () => {
  assert.match(readFileSync(join(ROOT, '.npmrc'), 'utf8'), /^ignore-scripts=true$/m);
  const build = stages[0]!;
  const skip = build.findIndex((instruction) => instruction.keyword === 'ENV' && /\bONNXRUNTIME_NODE_INSTALL=skip\b/.test(instruction.text));
  const install = build.findIndex((instruction) => instruction.keyword === 'RUN' && instruction.text.includes('npm ci'));
  assert.ok(skip >= 0 && skip < install, 'ENV ONNXRUNTIME_NODE_INSTALL=skip precedes npm ci');
});

test('the runtime runs as a numeric non-root user, exposes HTTP, gRPC and metrics, keeps /models as a volume and serves it on all interfaces', () => {
  const user = last(runtime, 'USER')?.text ?? '';
  assert.match(user, /^[1-9]\d*(:\d+)?$/, `USER ${user}: numeric (runAsNonRoot can check it) and not 0`);
  assert.deepEqual(last(runtime, 'EXPOSE')?.text.split(/\s+/), ['8000', '8001', '8002']);
  assert.deepEqual(execForm(last(runtime, 'VOLUME')), ['/models']);
  assert.deepEqual(execForm(last(runtime, 'ENTRYPOINT')), ['node', '/app/dist/cli.js']);
  assert.deepEqual(execForm(last(runtime, 'CMD')), ['serve', '--model-repository', '/models', '--host', '0.0.0.0']);
  assert.equal(last(runtime, 'STOPSIGNAL')?.text, 'SIGTERM');
});

test('.dockerignore lets in every path the build stage copies from the context, and keeps tests out', () => {
  const allowed = new Set(DOCKERIGNORE.split('\n').filter((line) => line.startsWith('!')).map((line) => line.slice(1).replace(/\/\*\*$/, '')));
  const sources = find(stages[0]!, 'COPY').flatMap((copy) => copy.text.split(/\s+/).slice(0, -1));
  for (const source of sources) assert.ok(allowed.has(source), `${source} is copied but .dockerignore leaves it out`);
  assert.match(DOCKERIGNORE, /^\*\*$/m, 'everything else stays out (node_modules, dist, .git)');
  assert.match(DOCKERIGNORE, /^src\/\*\*\/\*\.test\.ts$/m);
});

let repo: string;
before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'nereid-image-'));
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');
});
after(() => rm(repo, { recursive: true, force: true }));

/** Runs the image's HEALTHCHECK command as Docker would, with the URL it probes set through its variable. */
function healthCheck(url: string): Promise<number> {
  const healthcheck = last(runtime, 'HEALTHCHECK');
  assert.ok(healthcheck, 'the runtime stage has a HEALTHCHECK');
  const [command, ...args] = execForm({ ...healthcheck, text: healthcheck.text.slice(healthcheck.text.indexOf('CMD ')) });
  assert.equal(command, 'node', 'probes with node itself: the slim image has no curl');
  return new Promise((resolve) => {
    execFile(process.execPath, args, { env: { ...process.env, NEREID_HEALTHCHECK_URL: url } }, (error) =>
      resolve(error ? Number((error as { code?: number }).code ?? 1) : 0),
    );
  });
}

test("the image's default command serves (its flags parse), and its health check passes on /v2/health/ready and fails on an error status or a closed port", async () => {
  const healthcheck = last(runtime, 'HEALTHCHECK')!.text;
  assert.match(healthcheck, /'http:\/\/127\.0\.0\.1:8000\/v2\/health\/ready'/, 'by default it probes readiness on the HTTP port');
  // The default command as the image runs it, bound to loopback and this test's repository instead of /models.
  const flags = execForm(last(runtime, 'CMD'))
    .slice(1)
    .map((arg) => (arg === '/models' ? repo : arg === '0.0.0.0' ? '127.0.0.1' : arg));
  const served = await serveChild(repo, [...flags, '--metrics-port', String(await freePort())]);
  try {
    assert.equal(await healthCheck(`${served.url}/v2/health/ready`), 0);
    assert.equal(await healthCheck(`${served.url}/v2/health/no-such-probe`), 1);
    assert.equal(await healthCheck(`http://127.0.0.1:${await freePort()}/v2/health/ready`), 1);
  } finally {
    assert.equal(await stopChild(served), 0, 'SIGTERM drains and exits 0: PID 1 in the container needs no init');
  }
});
