/**
 * The package as a person installs it: packed from this checkout, installed into an empty project with
 * `npm install <tarball>` (the npm registry only; no flag, no environment variable, no .npmrc of theirs), then imported
 * and served from there. onnxruntime-node's postinstall, which would download CUDA libraries from NuGet, must not
 * need anything from them; the tarball must leave out what dependencies already ship, and still serve every bundled
 * model.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { servedBy, stopChild } from './support/cli-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { name: string; bin: Record<string, string> };

/**
 * A person's shell, not `npm test`'s: none of the npm settings npm passes to the scripts it runs (this clone's
 * ignore-scripts among them, which would hide what an install runs), no onnxruntime-node setting, and no
 * node_modules/.bin of this checkout on the PATH.
 */
function personsEnvironment(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(name) && name !== 'INIT_CWD'));
  env.PATH = (env.PATH ?? '')
    .split(delimiter)
    .filter((entry) => !entry.includes('node_modules'))
    .join(delimiter);
  return env;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: personsEnvironment(), timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) || 1 : 0, stdout, stderr }),
    );
  });
}

/** Files of this checkout that git tracks, or undefined where there is no git (a copy without .git). */
async function trackedFiles(): Promise<Set<string> | undefined> {
  const listed = await run('git', ['ls-files', '-z'], ROOT, 60_000);
  return listed.code === 0 ? new Set(listed.stdout.split('\0').filter((path) => path !== '')) : undefined;
}

test('the packed tarball installs into an empty project with plain npm install, imports, and serves every bundled model', { timeout: 600_000 }, async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'nereid-packed-'));
  t.after(() => rm(work, { recursive: true, force: true }));

  // What a publish would pack: dist/ built from these sources (built only when older than them).
  const build = await run(process.execPath, ['scripts/build-if-stale.mjs'], ROOT, 300_000);
  assert.equal(build.code, 0, `building dist/ failed:\n${build.stdout}${build.stderr}`);
  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], ROOT, 120_000);
  assert.equal(pack.code, 0, `npm pack failed:\n${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout) as { filename: string; size: number; files: { path: string; size: number }[] }[];
  const packedPaths = packed!.files.map((file) => file.path);
  assert.ok(packedPaths.includes('LICENSE') && packedPaths.includes('README.md'), 'LICENSE and README travel with the package');
  assert.ok(packedPaths.includes(PACKAGE.bin.nereid!), `the nereid command (${PACKAGE.bin.nereid}) is packed`);
  // The README links its docs by relative path: they must resolve inside node_modules/nereid too.
  const linkedDocs = [...new Set([...(await readFile(join(ROOT, 'README.md'), 'utf8')).matchAll(/\]\((docs\/[^)#\s]+)/g)].map((match) => match[1]!))];
  assert.ok(linkedDocs.length > 5, `README links docs: ${linkedDocs.join(', ')}`);
  assert.deepEqual(linkedDocs.filter((path) => !packedPaths.includes(path)), [], 'docs the README links that the package lacks');
  // Source maps would point at src/, which is not packed: none is shipped, and no packed file names one (below).
  assert.deepEqual(packedPaths.filter((path) => path.endsWith('.map')), [], 'packed source maps, whose sources (src/) are not in the package');
  // Models that dependencies ship are copied at first use, not carried: the pack holds only the repository's own files.
  const tracked = await trackedFiles();
  if (tracked) {
    const copies = packedPaths.filter((path) => path.startsWith('models/') && !tracked.has(path));
    assert.deepEqual(copies, [], 'packed model files that git does not track (copies from dependencies: list them in models/.gitignore)');
  }
  t.diagnostic(`${packed!.filename}: ${(packed!.size / 1e6).toFixed(1)} MB packed, ${packed!.files.length} files`);

  // An empty project, and the install a person would type.
  const project = join(work, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'tries-nereid', version: '1.0.0', private: true, type: 'module' }, null, 2));
  // --prefer-offline only reads what the npm cache already holds instead of asking the registry again: speed, not
  // correctness (the same install without it gives the same tree).
  const ping = await run('npm', ['ping'], project, 120_000);
  if (ping.code !== 0) {
    t.skip(`the npm registry is unreachable from here, so nothing can be installed: ${(ping.stderr.split('\n').find((line) => /error/i.test(line)) ?? ping.stderr).trim()}`);
    return;
  }
  const install = await run('npm', ['install', '--prefer-offline', join(work, packed!.filename)], project, 480_000);
  assert.equal(install.code, 0, `npm install <tarball> failed:\n${install.stdout}${install.stderr}`);
  assert.doesNotMatch(install.stdout + install.stderr, /Downloading|nuget/i, "onnxruntime-node's postinstall downloaded nothing");
  // Where onnxruntime-node would have downloaded CUDA libraries (linux x64), what stands there is Nereid's placeholder.
  const cudaProvider = join(project, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', `${process.platform}`, `${process.arch}`, 'libonnxruntime_providers_cuda.so');
  if (existsSync(cudaProvider)) assert.match(await readFile(cudaProvider, 'utf8'), /placeholder that Nereid wrote/);
  // npm 11 lists every dependency with an install script that the project has not reviewed (onnxruntime-node's among
  // them): its advice to the project, not a warning about this package. Anything else npm warns of is ours to fix.
  const warnings = install.stderr.split('\n').filter((line) => /^npm warn/i.test(line) && !/^npm warn install-scripts\b/i.test(line));
  assert.deepEqual(warnings, [], 'npm install printed warnings');

  const installed = join(project, 'node_modules', PACKAGE.name);
  // ESM imports of the library and of the client, by the package's name, from the project.
  await writeFile(
    join(project, 'imports.mjs'),
    `import { createServer, Server } from '${PACKAGE.name}';\n` +
      `import { HttpClient, GrpcClient } from '${PACKAGE.name}/client';\n` +
      'console.log(JSON.stringify([typeof createServer, typeof Server, typeof HttpClient, typeof GrpcClient]));\n',
  );
  const imports = await run(process.execPath, ['imports.mjs'], project, 60_000);
  assert.equal(imports.code, 0, imports.stderr);
  assert.deepEqual(JSON.parse(imports.stdout), ['function', 'function', 'function', 'function']);
  for (const types of ['dist/index.d.ts', 'dist/client/index.d.ts']) assert.ok(existsSync(join(installed, types)), `${types} is installed for TypeScript users`);
  const mapped = [];
  for (const path of packedPaths.filter((candidate) => candidate.endsWith('.js'))) {
    if ((await readFile(join(installed, path), 'utf8')).includes('//# sourceMappingURL=')) mapped.push(path);
  }
  assert.deepEqual(mapped, [], 'installed files that name a source map the package does not ship');

  // The README's library example, as the installed README gives it, runs from the project: the first use of the bundled
  // repository, whose models from dependencies are not in place yet.
  const readme = await readFile(join(installed, 'README.md'), 'utf8');
  const example = /## Library\n+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example, "the installed README has a Library section that opens with a ts example");
  await writeFile(join(project, 'library-example.mjs'), `${example}console.log(JSON.stringify(response.outputs.map((output) => output.name)));\n`);
  const library = await run(process.execPath, ['library-example.mjs'], project, 300_000);
  assert.equal(library.code, 0, `the README's library example failed from the installed package:\n${library.stdout}${library.stderr}`);
  const outputs = library.stdout.split('\n').find((line) => line.startsWith('['));
  assert.deepEqual(outputs && JSON.parse(outputs), ['softmax_0.tmp_0'], `the README's library example answered:\n${library.stdout}`);

  // The installed command with no repository named serves the bundled one, preparing what dependencies provide.
  const bin = join(project, 'node_modules', '.bin', 'nereid');
  const served = await servedBy(
    spawn(bin, ['serve', '--http-port', '0', '--grpc-port', '0', '--allow-metrics', 'false', '--log-format', 'json'], {
      cwd: project,
      env: personsEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  t.after(() => stopChild(served));
  const bundled = (await readdir(join(installed, 'models'), { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  const { models } = (await (await fetch(`${served.url}/v2/models`)).json()) as { models: { name: string; state: string; reason?: string }[] };
  for (const model of bundled) {
    const entry = models.find((candidate) => candidate.name === model);
    assert.equal(entry?.state, 'READY', `bundled model ${model}: ${entry ? `${entry.state} ${entry.reason ?? ''}` : 'not served'}\n${served.output()}`);
  }
  assert.ok((await stat(join(installed, 'models', 'ocr_detection', '1', 'model.onnx'))).size > 0, 'the OCR models were copied into place from their package');

  const classified = await fetch(`${served.url}/v2/models/fashion_mnist/classify`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: await readFile(join(ROOT, 'examples', 'images', 'sneaker.png')),
  });
  assert.equal(classified.status, 200, await classified.clone().text());
  const answer = (await classified.json()) as { predictions: { label: string }[] };
  assert.equal(answer.predictions[0]?.label, 'Sneaker');
  assert.equal(await stopChild(served), 0, 'SIGTERM drains and exits 0');
});

/** The packages (bare specifiers, by name) that the declaration files reachable from `entries` import. */
async function packagesReachedByDeclarations(entries: readonly string[]): Promise<Set<string>> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const pending = [...entries];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await readFile(file, 'utf8');
    for (const [, specifier] of text.matchAll(/(?:from\s+|import\()\s*['"]([^'"]+)['"]/g)) {
      if (specifier!.startsWith('.')) pending.push(join(dirname(file), specifier!.replace(/\.js$/, '.d.ts')));
      else if (!specifier!.startsWith('node:')) packages.add(specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!);
    }
  }
  return packages;
}

/**
 * The published declarations as a TypeScript project reads them under settings people commonly use, each checking the
 * package's own .d.ts (skipLibCheck off): a bundler's resolution, CommonJS with the classic node resolution (which
 * knows no `exports`, so the client subpath needs `typesVersions`), and Node's own ESM resolution.
 */
test('the published type declarations check in a consumer under bundler, CommonJS and NodeNext settings', { timeout: 600_000 }, async (t) => {
  const build = await run(process.execPath, ['scripts/build-if-stale.mjs'], ROOT, 300_000);
  assert.equal(build.code, 0, `building dist/ failed:\n${build.stdout}${build.stderr}`);
  const project = await mkdtemp(join(tmpdir(), 'nereid-types-'));
  t.after(() => rm(project, { recursive: true, force: true }));
  // The package as installed: its declarations, and beside it the dependencies they import (fastify, grpc-js, @types/node).
  await mkdir(join(project, 'node_modules'));
  await symlink(ROOT, join(project, 'node_modules', PACKAGE.name), 'dir');
  await symlink(join(ROOT, 'node_modules', '@types'), join(project, 'node_modules', '@types'), 'dir');
  await writeFile(
    join(project, 'consumer.ts'),
    `import { createServer } from '${PACKAGE.name}';\n` +
      `import { HttpClient, GrpcClient, DATATYPES, type HttpClientOptions, type Compression, type Datatype } from '${PACKAGE.name}/client';\n` +
      "const options: HttpClientOptions = { url: 'http://127.0.0.1:8000' };\n" +
      "const compression: Compression = 'gzip';\n" +
      "const datatype: Datatype = DATATYPES[0];\n" +
      'export const used = [createServer, new HttpClient(options), GrpcClient, compression, datatype];\n',
  );
  const settings = {
    bundler: { module: 'esnext', moduleResolution: 'bundler' },
    commonjs: { module: 'commonjs', moduleResolution: 'node', esModuleInterop: true },
    nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
  };
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'types-consumer', private: true, type: 'module' }));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  // The packages whose types the declarations reach. ioredis 6.1's own declarations import an untyped package, so a
  // consumer installing today fails with skipLibCheck off when ours reach them; BullMQ's reach ioredis's. The job
  // functions spell out what they take instead.
  const reached = await packagesReachedByDeclarations([join(ROOT, 'dist', 'index.d.ts'), join(ROOT, 'dist', 'client', 'index.d.ts')]);
  assert.deepEqual([...reached].filter((name) => name === 'ioredis' || name === 'bullmq'), [], `the declarations import ${[...reached].join(', ')}`);
  for (const [name, compilerOptions] of Object.entries(settings)) {
    const config = { compilerOptions: { ...compilerOptions, target: 'es2022', strict: true, skipLibCheck: false, noEmit: true }, files: ['consumer.ts'] };
    await writeFile(join(project, `tsconfig.${name}.json`), JSON.stringify(config));
  }
  // One build of the three projects: the declarations they share are read once (a third of the CPU of three runs).
  // --verbose names the project before its errors.
  const checked = await run(process.execPath, [tsc, '-b', '--verbose', ...Object.keys(settings).map((name) => `tsconfig.${name}.json`)], project, 300_000);
  assert.equal(checked.code, 0, `tsc found errors (the project named before them has the settings ${JSON.stringify(settings)}):\n${checked.stdout}${checked.stderr}`);
});
