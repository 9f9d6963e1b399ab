/**
 * The resumable output: ids read back from lines, a partial last line cut off, every record
 * written once however often it is offered, the lock against a second writer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { errorLine, isErrorLine, readOutputLine, recordKey } from './job-record.js';
import { JobOutput } from './job-output.js';

let dir: string;
before(async () => (dir = await mkdtemp(join(tmpdir(), 'nereid-job-output-'))));
after(() => rm(dir, { recursive: true, force: true }));

describe('output lines', () => {
  test('ids are read from the front of a line, strings and numbers kept apart', () => {
    assert.equal(readOutputLine('{"id":12,"outputs":[],"error":null}')?.id, 12);
    assert.equal(readOutputLine('{"id":"a/\\"b\\".png","error":null}')?.id, 'a/"b".png');
    assert.equal(readOutputLine('{"error":null,"id":"late"}')?.id, 'late');
    assert.equal(readOutputLine('{"id":"cut')?.id, undefined);
    assert.equal(readOutputLine('not json')?.id, undefined);
  });

  test('an error line is told from a result line', () => {
    assert.equal(isErrorLine(errorLine(3, 'bad')), true);
    assert.equal(isErrorLine('{"id":3,"outputs":[],"error":null}'), false);
  });

  test('a line rewritten by another tool (spaces, keys reordered) reads as the line Nereid wrote', () => {
    const written = '{"id":"a.png","pass_through":{"label":"x}\\\\","n":[1]},"model_name":"m","model_version":"2","predictions":[],"error":null}';
    assert.deepEqual(readOutputLine(written), { id: 'a.png', failed: false, answeredBy: 'm version 2' });
    // As Python's json.dumps writes it: a space after every ':' and ','.
    assert.deepEqual(readOutputLine('{"id": "a.png", "model_name": "m", "model_version": "2", "predictions": [], "error": null}'), { id: 'a.png', failed: false, answeredBy: 'm version 2' });
    assert.deepEqual(readOutputLine('{"error": null, "model_version": "2", "id": 7, "model_name": "m"}'), { id: 7, failed: false, answeredBy: 'm version 2' });
    assert.deepEqual(readOutputLine('{"id": 4, "error": "input \'INPUT0\' expects INT32"}'), { id: 4, failed: true });
    assert.deepEqual(readOutputLine(errorLine('b', 'bad "quoted" } text', { label: 'y' })), { id: 'b', failed: true });
    // A pass-through field named like the answer's does not pass for it.
    assert.deepEqual(readOutputLine('{"id":1,"pass_through":{"model_name":"old","model_version":"9"},"model_name":"m","model_version":"2","error":null}')?.answeredBy, 'm version 2');
    assert.equal(readOutputLine('{"id":5,"outputs":[]}')?.failed, true, 'no error field: not trusted as answered');
    assert.equal(readOutputLine('{"id":1,"model_name":"m","model_version":"2","outp'), undefined, 'cut short');
    assert.equal(readOutputLine('{"id":1,"error":"x"} trailing'), undefined);
  });
});

describe('JobOutput', () => {
  test('resumes: complete lines are done, a partial last line is cut off, a record is written once', async () => {
    const path = join(dir, 'resume.jsonl');
    await writeFile(path, '{"id":1,"model_name":"m","model_version":"2","error":null}\n{"id":"x.png","error":"broken"}\n{"id":3,"outp');
    const warnings: string[] = [];
    const output = await JobOutput.open(path, { warn: (message) => warnings.push(message) });
    assert.deepEqual(warnings, [`${path}: its last line was cut short at byte 91 (the job was stopped while writing it); cut off, and its record runs again`]);
    assert.deepEqual(output.resumed, { records: 2, failed: 1, answeredBy: new Set(['m version 2']) });
    assert.equal(output.has(1), true);
    assert.equal(output.has('1'), false);
    assert.equal(output.has(3), false);
    const written = await output.append([
      { id: 3, line: '{"id":3,"error":null}' },
      { id: 1, line: '{"id":1,"error":null}' },
      { id: 3, line: '{"id":3,"error":null}' },
    ]);
    assert.deepEqual(written, { written: 1, failed: 0, outOfDistribution: 0 });
    await output.close();
    assert.equal(await readFile(path, 'utf8'), '{"id":1,"model_name":"m","model_version":"2","error":null}\n{"id":"x.png","error":"broken"}\n{"id":3,"error":null}\n');
  });

  test('--retry-failed drops the failed lines; --restart empties the file', async () => {
    const path = join(dir, 'retry.jsonl');
    await writeFile(path, '{"id":1,"error":null}\n{"id":2,"error":"transient"}\n');
    const retry = await JobOutput.open(path, { retryFailed: true });
    assert.equal(retry.has(2), false);
    await retry.close();
    assert.equal(await readFile(path, 'utf8'), '{"id":1,"error":null}\n');
    const restart = await JobOutput.open(path, { restart: true });
    assert.equal(restart.doneCount, 0);
    await restart.close();
    assert.equal(await readFile(path, 'utf8'), '');
  });

  test('a second writer is refused while the first holds the lock; a dead one\'s lock is taken over', async () => {
    const path = join(dir, 'locked.jsonl');
    const first = await JobOutput.open(path);
    await assert.rejects(JobOutput.open(path), /another batch job in this process is writing this output/);
    await writeFile(join(dir, 'other.lock.jsonl.lock'), '1\n'); // pid 1 is alive
    await assert.rejects(JobOutput.open(join(dir, 'other.lock.jsonl')), /another batch job \(pid 1\) is writing this output/);
    await first.close();
    await writeFile(`${path}.lock`, '2147483646\n'); // no such process
    const second = await JobOutput.open(path);
    await second.close();
  });

  test('the input itself or a folder is refused as the output, saying what to give instead', async () => {
    const path = join(dir, 'requests.jsonl');
    await writeFile(path, '{"id": "a", "INPUT0": [1]}\n');
    await assert.rejects(JobOutput.open(path, { input: join(dir, '.', 'requests.jsonl') }), /: output: '.*requests\.jsonl' is the input itself; write the answers to another file/);
    await assert.rejects(JobOutput.open(dir), /: output: '.*' is a folder; name a file in it, e\.g\. .*answers\.jsonl/);
  });

  test('a file that is not a batch output is not appended to', async () => {
    const path = join(dir, 'other.jsonl');
    await writeFile(path, 'hello\n');
    await assert.rejects(JobOutput.open(path), /line 1 is not a batch record/);
  });
});

test('record keys keep line numbers, file names and id values apart, "#2" included', () => {
  const keys = [2, '2', '#2', '##2'].map(recordKey);
  assert.equal(new Set(keys).size, 4, keys.join(' '));
});

test('--restart with --retry-failed is refused: one runs every record again, the other only the failed ones', async () => {
  await assert.rejects(JobOutput.open(join(dir, 'both.jsonl'), { restart: true, retryFailed: true }), /: restart: true runs every record again and retryFailed: true only those written with an error: give one of them/);
});
