import { readFileSync } from 'node:fs';

/** Read once from package.json, which sits one folder above both src/ and dist/. */
export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
