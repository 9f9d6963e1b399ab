/**
 * --model-control-mode poll on a real server over HTTP: the repository is rescanned every 0.2 s and
 * the server follows its files. A new version is served, a touched but unchanged file reloads
 * nothing, a changed file reloads even with its mtime put back, a config that does not parse
 * keeps the loaded version serving with the reason in the index and a warning in the log, its fix
 * reloads, a new model folder loads and a removed one unloads. The load/unload API is refused, as
 * in Triton. Each wait is bounded in polls (the server counts them), not in seconds.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import type { Server } from '../src/server/server.js';
import { serveFlagName } from '../src/server/server-options.js';
import { capturingLogger } from './support/fake-backend.js';
import { startTestServer } from './support/test-server.js';

const config = (maxBatchSize: number) => `name: "scale"\nplatform: "onnxruntime_onnx"\nmax_batch_size: ${maxBatchSize}\n`;

/** Polls that may pass before a change must have taken effect: one to see it (it may land mid-scan), one to apply it, and slack. */
const POLLS_ALLOWED = 6;

/**
 * Waits until `check` holds, checking after each finished poll; fails once POLLS_ALLOWED polls have
 * passed without it (a long wall-clock guard only stops a stuck server from hanging the suite).
 */
async function withinPolls(server: Server, what: string, check: () => Promise<boolean>): Promise<void> {
  const poller = server.poller!;
  const from = poller.completedPolls;
  const guard = Date.now() + 120_000;
  let seen = poller.completedPolls;
  while (Date.now() < guard) {
    if (await check()) return;
    if (poller.completedPolls - from > POLLS_ALLOWED) assert.fail(`${what}: not after ${POLLS_ALLOWED} polls`);
    while (poller.completedPolls === seen && Date.now() < guard) await new Promise((resolve) => setTimeout(resolve, 20));
    seen = poller.completedPolls;
  }
  assert.fail(`${what}: the server stopped polling`);
}

/** Waits for `count` more polls to finish. */
async function polls(server: Server, count: number): Promise<void> {
  const target = server.poller!.completedPolls + count;
  while (server.poller!.completedPolls < target) await new Promise((resolve) => setTimeout(resolve, 20));
}

test('poll mode loads, reloads and unloads as the repository changes; a config that does not parse keeps the old version serving, with the reason shown', async (t) => {
  const { logger, lines } = capturingLogger();
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'scale', 1, scaleModel(1), config(8));
    },
    // Named as `nereid serve` names them: docs/lifecycle.md quotes its answer.
    server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger, settingName: serveFlagName },
  });
  t.after(() => served.close());
  const { server, url, repoDir } = served;
  const folder = join(repoDir, 'scale');

  const infer = async (model = 'scale') => {
    const response = await fetch(`${url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }),
    });
    const body = (await response.json()) as { model_version?: string; outputs?: { data: number[] }[]; error?: string };
    return { status: response.status, version: body.model_version, factor: body.outputs?.[0].data[0], error: body.error };
  };
  const indexRow = async () => {
    const response = await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' });
    return ((await response.json()) as { name: string; version?: string; state?: string; reason?: string }[]).filter((row) => row.name === 'scale');
  };
  assert.deepEqual(await infer(), { status: 200, version: '1', factor: 1, error: undefined });

  // As in Triton, the files decide in poll mode: load and unload requests are refused.
  for (const action of ['load', 'unload']) {
    const response = await fetch(`${url}/v2/repository/models/scale/${action}`, { method: 'POST', body: '{}' });
    const body = (await response.json()) as { error: string };
    assert.equal(response.status, 503, body.error);
    assert.match(body.error, new RegExp(`explicit model load / unload is not allowed \\(${action}\\): the server runs with --model-control-mode poll`));
    if (action === 'load') {
      const quoted = /refused in poll mode \(503, `([^`]*)`\)/.exec(await readFile('docs/lifecycle.md', 'utf8'))?.[1];
      assert.equal(quoted?.replace(/\s+/g, ' '), body.error, 'docs/lifecycle.md quotes the answer exactly');
    }
  }

  // Touched, not changed: the same version object keeps serving.
  const before = server.model('scale');
  const later = new Date(Date.now() + 60_000);
  await utimes(join(folder, '1', 'model.onnx'), later, later);
  await utimes(join(folder, 'config.pbtxt'), later, later);
  await polls(server, 3);
  assert.equal(server.model('scale'), before, 'a touched file reloads nothing');

  await writeModel(repoDir, 'scale', 2, scaleModel(2));
  await withinPolls(server, 'version 2 served', async () => (await infer()).version === '2');
  assert.equal((await infer()).factor, 2);

  // New bytes under the old mtime: the digest sees them.
  const modelFile = join(folder, '2', 'model.onnx');
  const { atime, mtime } = await stat(modelFile);
  await writeFile(modelFile, scaleModel(3));
  await utimes(modelFile, atime, mtime);
  await withinPolls(server, 'changed weights with the mtime put back reloaded', async () => (await infer()).factor === 3);

  await writeFile(join(folder, 'config.pbtxt'), 'name: "scale"\nmax_batch_size: [\n');
  await withinPolls(server, 'the broken config reported in the index', async () => ((await indexRow())[0]?.reason ?? '') !== '');
  const [row] = await indexRow();
  assert.equal(row.state, 'READY');
  assert.equal(row.version, '2');
  assert.match(row.reason!, /^serving; its reload failed: config\.pbtxt line 2, column 17: '\[' for field 'max_batch_size' is never closed/);
  assert.deepEqual(await infer(), { status: 200, version: '2', factor: 3, error: undefined }, 'the loaded version keeps serving');
  const warning = lines.find((line) => line.level === 40 && /^reload of model 'scale' failed; the loaded version\(s\) keep serving: config\.pbtxt line 2, column 17/.test(line.msg));
  assert.ok(warning, lines.map((line) => `${line.level} ${line.msg}`).join('\n'));
  assert.ok(!lines.some((line) => line.level >= 50), 'a model still serving raises no error: the warning says it once');

  await writeFile(join(folder, 'config.pbtxt'), config(4));
  await withinPolls(server, 'the fixed config reloaded', async () => server.model('scale').config.max_batch_size === 4);
  assert.deepEqual(await indexRow(), [{ name: 'scale', version: '2', state: 'READY', reason: '' }]);
  assert.equal((await infer()).factor, 3);

  await writeModel(repoDir, 'newcomer', 1, scaleModel(5));
  await withinPolls(server, 'a new model folder loaded', async () => (await infer('newcomer')).factor === 5);

  await rm(folder, { recursive: true });
  await withinPolls(server, 'the removed model unloaded', async () => (await infer()).status === 404);
  assert.match((await infer()).error!, /Request for unknown model: 'scale' has no available versions \(it was unloaded\)/);
  assert.equal((await infer('newcomer')).status, 200, 'the other model keeps serving');
  assert.ok(lines.some((line) => line.level === 30 && line.msg === "repository poll: model 'scale' was removed; unloading"));
});

test('with version_policy all, a version whose new file does not load keeps serving as loaded, while the others reload', async (t) => {
  const allVersions = `name: "both"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\nversion_policy: { all: {} }\n`;
  const { logger, lines } = capturingLogger();
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'both', 1, scaleModel(1), allVersions);
      await writeModel(repo, 'both', 2, scaleModel(2));
    },
    server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger },
  });
  t.after(() => served.close());
  const { server, url, repoDir } = served;
  const factorOf = async (version: string) => {
    const response = await fetch(`${url}/v2/models/both/versions/${version}/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }),
    });
    const body = (await response.json()) as { outputs?: { data: number[] }[]; error?: string };
    return response.status === 200 ? body.outputs![0].data[0] : body.error;
  };
  assert.deepEqual([await factorOf('1'), await factorOf('2')], [1, 2]);

  await writeFile(join(repoDir, 'both', '2', 'model.onnx'), 'not an ONNX file');
  await writeModel(repoDir, 'both', 1, scaleModel(10));
  await withinPolls(server, 'version 1 reloaded', async () => (await factorOf('1')) === 10);
  assert.equal(await factorOf('2'), 2, 'version 2 keeps serving as it was loaded');
  const response = await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' });
  const rows = ((await response.json()) as { name: string; version?: string; state?: string; reason?: string }[]).filter((row) => row.name === 'both');
  assert.deepEqual(rows.map((row) => [row.version, row.state]), [['1', 'READY'], ['2', 'READY']]);
  assert.equal(rows[0].reason, '');
  assert.match(rows[1].reason!, /^serving; its reload failed: /);
  assert.ok(lines.some((line) => line.level === 40 && /^reload of model 'both' version 2 failed; the loaded version 2 keeps serving/.test(line.msg)));
  assert.ok(!lines.some((line) => line.level >= 50), 'the version still serving raises no error');
});

test('a repository root that is a link swapped to another target (git-sync, a release symlink) is followed by the next poll', async (t) => {
  const { logger, lines } = capturingLogger();
  const base = await mkdtemp(join(tmpdir(), 'nereid-poll-link-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  await writeModel(join(base, 'rel1'), 'scale', 2, scaleModel(2), config(8));
  await writeModel(join(base, 'rel2'), 'scale', 2, scaleModel(2), config(8));
  await writeModel(join(base, 'rel2'), 'scale', 3, scaleModel(3));
  const current = join(base, 'cur');
  await symlink('rel1', current);
  const served = await startTestServer({ repoDir: current, server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger } });
  t.after(() => served.close());
  const { server } = served;
  assert.equal(server.model('scale').version, '2');

  // git-sync's swap: a new link renamed over the old one, atomically.
  await symlink('rel2', join(base, 'cur.new'));
  await rename(join(base, 'cur.new'), current);
  await withinPolls(server, 'version 3 of the new target served', async () => server.model('scale').version === '3');
  const moved = lines.find((line) => /^model repository .*cur now points to .*rel2 \(was .*rel1\)/.test(line.msg));
  assert.ok(moved, lines.map((line) => `${line.level} ${line.msg}`).join('\n'));

  // Back to the first target: version 3 is gone there.
  await symlink('rel1', join(base, 'cur.new'));
  await rename(join(base, 'cur.new'), current);
  await withinPolls(server, 'back to version 2', async () => server.model('scale').version === '2');
});

test('while the repository folder is missing (a volume remounting), the listings answer the models the server holds and say why, with no path', async (t) => {
  const { logger, lines } = capturingLogger();
  const base = await mkdtemp(join(tmpdir(), 'nereid-poll-gone-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const repo = join(base, 'models');
  await writeModel(repo, 'scale', 1, scaleModel(1), config(8));
  const served = await startTestServer({ repoDir: repo, server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger } });
  t.after(() => served.close());
  const { server, url } = served;

  await rename(repo, join(base, 'away'));
  await polls(server, 2);
  const index = await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' });
  const indexText = await index.text();
  assert.equal(index.status, 200, indexText);
  assert.deepEqual(JSON.parse(indexText), [{ name: 'scale', version: '1', state: 'READY', reason: '' }]);
  const list = await fetch(`${url}/v2/models`);
  const listText = await list.text();
  assert.equal(list.status, 200, listText);
  assert.deepEqual(JSON.parse(listText), {
    models: [{ name: 'scale', state: 'READY', versions: ['1'] }],
    repository_error: 'the model repository cannot be read (it does not exist now, ENOENT); listed: the models this server holds',
  });
  assert.ok(!listText.includes(base), 'no server path in the answer');
  await polls(server, 3);
  const warnings = lines.filter((line) => line.level === 40);
  assert.deepEqual(
    warnings.map((line) => line.msg),
    [`the model repository ${repo} cannot be read (it does not exist now, ENOENT): the models loaded keep serving as they are, and nothing is loaded or unloaded until it can be read again`],
    'said once, not at every poll or listing, and without the hint for a wrong path at start',
  );
  const infer = await fetch(`${url}/v2/models/scale/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
  assert.equal(infer.status, 200, 'inference keeps serving');

  await rename(join(base, 'away'), repo);
  // The poll sees it, with no listing asked for.
  await withinPolls(server, 'the repository said readable again', async () => lines.some((line) => line.level === 30 && line.msg === `the model repository ${repo} can be read again`));
  assert.deepEqual(await (await fetch(`${url}/v2/models`)).json(), { models: [{ name: 'scale', state: 'READY', versions: ['1'] }] });
  assert.equal(lines.filter((line) => line.level === 30 && / can be read again$/.test(line.msg)).length, 1, 'said once');
});

test("an ensemble that names a step's version is UNAVAILABLE while that version is gone, and READY again when it is back", async (t) => {
  const { logger, lines } = capturingLogger();
  const allVersions = `name: "scaler"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\nversion_policy: { all: {} }\n`;
  const ensemble = `name: "pinned"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "V1" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "V2" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "scaler" model_version: 1 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "V1" } },
  { model_name: "scaler" model_version: 2 input_map { key: "INPUT0" value: "IN" } output_map { key: "OUTPUT0" value: "V2" } }
] }
`;
  const served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'scaler', 1, scaleModel(1), allVersions);
      await writeModel(repo, 'scaler', 2, scaleModel(2));
      await mkdir(join(repo, 'pinned', '1'), { recursive: true });
      await writeFile(join(repo, 'pinned', 'config.pbtxt'), ensemble);
    },
    server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger },
  });
  t.after(() => served.close());
  const { server, url, repoDir } = served;
  const ready = async () => (await fetch(`${url}/v2/models/pinned/ready`)).status === 200;
  const infer = async () => {
    const response = await fetch(`${url}/v2/models/pinned/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'IN', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
    return { status: response.status, body: (await response.json()) as { outputs?: { data: number[] }[]; error?: string } };
  };
  assert.equal(await ready(), true);
  assert.deepEqual((await infer()).body.outputs!.map((output) => output.data[0]), [1, 2]);

  const moved = join(repoDir, '..', `scaler-1-${process.pid}`);
  await rename(join(repoDir, 'scaler', '1'), moved);
  t.after(() => rm(moved, { recursive: true, force: true }));
  await withinPolls(server, 'the ensemble not ready', async () => !(await ready()));
  assert.equal((await fetch(`${url}/v2/health/ready`)).status, 400, 'a model the server was asked to serve is not ready');
  const index = (await (await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; state?: string; reason?: string }[];
  assert.deepEqual(index.find((row) => row.name === 'pinned'), { name: 'pinned', state: 'UNAVAILABLE', reason: "ensemble 'pinned' contains models that are not available: scaler version 1" });
  const failed = await infer();
  assert.equal(failed.status, 503, failed.body.error);
  assert.ok(lines.some((line) => line.level === 30 && line.msg === "unloaded model 'scaler' version 1"), 'the version that went is logged');

  await rename(moved, join(repoDir, 'scaler', '1'));
  await withinPolls(server, 'the ensemble ready again', ready);
  assert.deepEqual((await infer()).body.outputs!.map((output) => output.data[0]), [1, 2]);
});

test('with two repositories, a copy of a serving model appearing in the second is ignored with a warning; a model first found in both serves from neither', async (t) => {
  const { logger, lines } = capturingLogger();
  const base = await mkdtemp(join(tmpdir(), 'nereid-poll-two-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const [repoA, repoB] = [join(base, 'repoA'), join(base, 'repoB')];
  await writeModel(repoA, 'scale', 1, scaleModel(1), config(8));
  await writeModel(repoA, 'twin', 1, scaleModel(4));
  await writeModel(repoB, 'twin', 1, scaleModel(4));
  const served = await startTestServer({ repoDir: repoA, moreRepoDirs: [repoB], server: { modelControlMode: 'poll', repositoryPollSecs: 0.2, logger } });
  t.after(() => served.close());
  const { server, url } = served;
  const infer = async (model: string) => {
    const response = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }) });
    const body = (await response.json()) as { model_version?: string; outputs?: { data: number[] }[]; error?: string };
    return { status: response.status, version: body.model_version, factor: body.outputs?.[0].data[0], error: body.error };
  };
  const indexRows = async (model: string) =>
    ((await (await fetch(`${url}/v2/repository/index`, { method: 'POST', body: '{}' })).json()) as { name: string; version?: string; state?: string; reason?: string }[]).filter(
      (row) => row.name === model,
    );
  const said = () => lines.map((line) => `${line.level} ${line.msg}`).join('\n');

  // Found in both at start: Triton's rule, with the repositories named by their folder's name only.
  assert.deepEqual(await indexRows('twin'), [{ name: 'twin', state: 'UNAVAILABLE', reason: "model appears in two or more repositories: 'repoA' and 'repoB'" }]);
  assert.equal((await infer('twin')).status, 404);

  const serving = server.model('scale');
  await cp(join(repoA, 'scale'), join(repoB, 'scale'), { recursive: true });
  await withinPolls(server, 'the copy warned of', async () => lines.some((line) => line.level === 40 && line.msg.includes("model 'scale' serving from")));
  await polls(server, 2);
  const warnings = lines.filter((line) => line.level === 40 && line.model === 'scale');
  assert.equal(warnings.length, 1, `warned once, not at every poll:\n${said()}`);
  assert.equal(warnings[0].msg, `model 'scale' serving from ${repoA} also appears in ${repoB}: that copy is ignored and the model keeps serving from ${repoA}; remove one of them (the one left is then the model, and is loaded if it differs)`);
  assert.equal(server.model('scale'), serving, 'the serving version was neither unloaded nor reloaded');
  assert.deepEqual(await infer('scale'), { status: 200, version: '1', factor: 1, error: undefined });
  assert.deepEqual(await indexRows('scale'), [{ name: 'scale', version: '1', state: 'READY', reason: '' }]);
  assert.ok(!lines.some((line) => line.model === 'scale' && /changed; reloading|unloaded/.test(line.msg)), said());

  // Its own folder still decides while the copy lies there.
  await writeModel(repoA, 'scale', 2, scaleModel(2));
  await withinPolls(server, 'version 2 from its own repository served', async () => (await infer('scale')).version === '2');
  assert.ok(lines.some((line) => line.msg === `loaded model 'scale' version 2 from ${repoA}`), `with several repositories, the load names its own:
${said()}`);

  await rm(join(repoB, 'scale'), { recursive: true });
  await withinPolls(server, 'the copy seen gone', async () => lines.some((line) => line.msg === `model 'scale' is now in one model repository only, ${repoA}`));
  assert.deepEqual(await infer('scale'), { status: 200, version: '2', factor: 2, error: undefined });

  // The model found in both at start loads once one copy is gone.
  await rm(join(repoA, 'twin'), { recursive: true });
  await withinPolls(server, 'twin served from repoB', async () => (await infer('twin')).factor === 4);
  assert.ok(lines.some((line) => line.msg === "repository poll: model 'twin' is in one repository now; loading"), said());
});
