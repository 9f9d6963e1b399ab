/** bench/quantized.ts as a person first runs it: --help prints its usage, and a mistake says what was wrong above it, instead of a stack trace. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const bench = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/quantized.ts'), ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );

test('bench/quantized.ts --help prints its usage; an unknown or missing option is named above the usage, exit 1, no stack', async () => {
  const help = await bench(['--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: node --import tsx bench\/quantized\.ts --model M --data/);
  assert.match(help.stdout, /--versions <list> +versions to compare, the first as the reference \(default: 1,2\)/);
  const unknown = await bench(['--bogus']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /^bench\/quantized\.ts: Unknown option '--bogus'[\s\S]*\n\nUsage: /);
  assert.doesNotMatch(unknown.stderr, /\n +at /, 'no stack trace');
  const missing = await bench(['--model', 'fashion_mnist']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^bench\/quantized\.ts: --model and --data are required\n\nUsage: /);
});
