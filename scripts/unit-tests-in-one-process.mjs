// The unit tests of src/ in one process (see bundledUnitTests): run-tests.mjs starts it with `node --import tsx --test`,
// so each file's tests register as it is imported and run in order, as they would in a process of their own.
import { resolve } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { bundledUnitTests } from './test-files.mjs';

for (const file of bundledUnitTests()) {
  // A file that fails to load fails as a test named after it, and the files after it still run.
  await import(pathToFileURL(resolve(file)).href).catch((error) => test(`${file} loads`, () => Promise.reject(error)));
}
