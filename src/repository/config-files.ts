/** A model's config as its folder gives it (config.pbtxt, .yaml, .yml or .json), or as a load request replaces it. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseModelConfig, type ModelConfig } from '../config/model-config.js';
import { parsePbtxt } from '../config/pbtxt.js';
import { checkOverride, RepositoryConfig } from './config-override.js';
import { containedFile, exists } from './repository-layout.js';

/** The config files a model folder may hold, in the order they are looked for: the first found is the config. */
export const CONFIG_FILES = ['config.pbtxt', 'config.yaml', 'config.yml', 'config.json'] as const;
export const CONFIG_FILE_NAMES: ReadonlySet<string> = new Set(CONFIG_FILES);

/**
 * A config's syntax error in one line, as pbtxt's reads (`config.yaml line 2, column 1: …`). The YAML parser's own
 * message goes on over several lines with the file's text and a caret under it: the log would take it in pieces, and
 * a client (the index, a request's 404) would be sent lines of a file it may have no right to read.
 */
function syntaxErrorMessage(file: string, text: string, error: Error): string {
  const message = error.message;
  // parsePbtxt already names the file, with the line and column.
  if (message.startsWith(file)) return message;
  const yamlPlace = /^([\s\S]*?) at line (\d+), column (\d+)(?::\n[\s\S]*)?$/.exec(message);
  if (yamlPlace) return `${file} line ${yamlPlace[2]}, column ${yamlPlace[3]}: ${yamlPlace[1]}`;
  // JSON.parse counts characters ("… in JSON at position 22", Node 22 adds "(line 1 column 23)").
  const jsonPlace = /^([\s\S]*?)(?: in JSON)? at position (\d+)(?: \(line \d+ column \d+\))?$/.exec(message);
  if (jsonPlace) {
    const before = text.slice(0, Number(jsonPlace[2])).split('\n');
    return `${file} line ${before.length}, column ${before[before.length - 1].length + 1}: ${jsonPlace[1]}`;
  }
  return `${file}: ${message.split('\n')[0]}`;
}

/**
 * The config of the model in `folder` (inside the repository folder `root`): `override` when a load gave one (a
 * client's is checked against the folder's own), else the folder's config file, else the defaults.
 */
export async function readModelConfig(folder: string, override: unknown, root: string): Promise<ModelConfig> {
  if (override instanceof RepositoryConfig) return parseModelConfig(override.config, 'config');
  if (override !== undefined) {
    const config = parseModelConfig(override, 'config override');
    checkOverride(config, await readModelConfig(folder, undefined, root).catch(() => undefined));
    return config;
  }
  for (const file of CONFIG_FILES) {
    if (!(await exists(join(folder, file)))) continue;
    // A config that is a link out of the repository is refused like any other file a model reads.
    const text = await readFile(await containedFile(root, folder, file, 'config file'), 'utf8');
    let raw: unknown;
    try {
      raw = file === 'config.pbtxt' ? parsePbtxt(text, file) : file === 'config.json' ? JSON.parse(text) : parseYaml(text);
    } catch (error) {
      throw new Error(syntaxErrorMessage(file, text, error as Error));
    }
    return parseModelConfig(raw, file);
  }
  return parseModelConfig({}, 'default config');
}
