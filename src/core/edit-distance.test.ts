import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closestName, editDistance } from './edit-distance.js';

test('editDistance counts insertions, deletions and substitutions by code point', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'ab'), 2);
  assert.equal(editDistance('é', 'e'), 1);
});

test('closestName finds the field a typo meant and nothing for an unrelated word', () => {
  const fields = ['max_batch_size', 'input', 'output', 'dynamic_batching', 'dims'];
  assert.equal(closestName('max_batch_sise', fields), 'max_batch_size');
  assert.equal(closestName('Max_Batch_Size', fields), 'max_batch_size');
  assert.equal(closestName('dimz', fields), 'dims');
  assert.equal(closestName('outputs', fields), 'output');
  assert.equal(closestName('dynamic', fields), 'dynamic_batching');
  assert.equal(closestName('flurb', fields), undefined);
});
