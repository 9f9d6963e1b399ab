/**
 * 64-bit integers over HTTP JSON, both ways: values beyond 2^53 (where a JSON number read as a
 * double would be rounded) reach the model and come back digit for digit through identity models.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { identityModel, writeModel } from '../src/onnx/test-models.js';
import { startTestServer, type TestServer } from './support/test-server.js';

let served: TestServer;

before(async () => {
  served = await startTestServer({
    models: async (repo) => {
      await writeModel(repo, 'identity_int64', 1, identityModel('int64'));
      await writeModel(repo, 'identity_uint64', 1, identityModel('uint64'));
    },
  });
});
after(() => served?.close());

/** Posts a JSON body written by hand (JSON.stringify cannot write these numbers) and returns the answer's text. */
async function inferText(model: string, datatype: string, literals: string[]): Promise<{ status: number; text: string }> {
  const body = `{"inputs":[{"name":"INPUT0","datatype":"${datatype}","shape":[1,${literals.length}],"data":[${literals.join(',')}]}]}`;
  const response = await fetch(`${served.url}/v2/models/${model}/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  return { status: response.status, text: await response.text() };
}

test('INT64 2^53+1, -(2^63) and 2^63-1 survive a round trip through an identity model over HTTP JSON', async () => {
  const literals = ['9007199254740993', '-9223372036854775808', '9223372036854775807', '-9007199254740993', '42'];
  const { status, text } = await inferText('identity_int64', 'INT64', literals);
  assert.equal(status, 200, text);
  assert.ok(text.includes(`"data":[${literals.join(',')}]`), text);
});

test('UINT64 2^64-1 and 2^53+1 survive a round trip through an identity model over HTTP JSON', async () => {
  const literals = ['18446744073709551615', '9007199254740993', '0'];
  const { status, text } = await inferText('identity_uint64', 'UINT64', literals);
  assert.equal(status, 200, text);
  assert.ok(text.includes(`"data":[${literals.join(',')}]`), text);
});

test('an integer outside the datatype is a 400 naming the element, not a rounded or wrapped value', async () => {
  for (const [model, datatype, literal] of [
    ['identity_int64', 'INT64', '9223372036854775808'],
    ['identity_uint64', 'UINT64', '18446744073709551616'],
    ['identity_uint64', 'UINT64', '-1'],
  ] as const) {
    const { status, text } = await inferText(model, datatype, [literal]);
    assert.equal(status, 400, text);
    assert.match(JSON.parse(text).error, new RegExp(`input 'INPUT0': element 0 is ${literal}, expected an integer in range for datatype ${datatype}`));
  }
});
