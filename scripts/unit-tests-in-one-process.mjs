// The unit tests of src/ in one process (see bundledUnitTests): run-tests.mjs starts it with `node --import tsx --test`,
// so each file's tests register as it is imported and run in order, as they would in a process of their own.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundledUnitTests } from './test-files.mjs';

for (const file of bundledUnitTests()) await import(pathToFileURL(resolve(file)).href);
