#!/usr/bin/env node
/**
 * The `nereid` command. Flag names follow Triton's tritonserver where a Triton flag exists. Each command is defined in
 * its module under cli/, which imports only what the command's definition needs (its options' schemas and defaults):
 * a command loads its own machinery when it runs, so that `nereid --help` or `nereid batch status` does not load the
 * server, ONNX Runtime, Fastify and gRPC first.
 */
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { ZodError } from 'zod';
import { BATCH_COMMANDS, addBatchCommands, endBatchCommand } from './cli/batch-commands.js';
import { EXIT_NOT_DONE, VERDICT_COMMANDS, commandLogger, describeOptionIssues } from './cli/command-support.js';
import { addEvalCommand } from './cli/eval-command.js';
import { addImageCommands } from './cli/image-commands.js';
import { addMonitoringCommands } from './cli/monitoring-commands.js';
import { addPromoteCommand } from './cli/promote-command.js';
import { addQuantizeCommand } from './cli/quantize-command.js';
import { addServeCommand } from './cli/serve-command.js';
import { addTuneCommand } from './cli/tune-command.js';
import { BUNDLED_REPOSITORY, isBundledRepository, prepareBundledRepository } from './repository/bundled-repository.js';
import { serveFlagName } from './server/server-options.js';
import { staleBuildWarning } from './tools/stale-build.js';
import { TRITON_SERVE_FLAGS } from './tools/triton-flags.js';
import { VERSION } from './version.js';

const program = new Command('nereid').description('Model inference server and toolkit (KServe V2 / Triton compatible)').version(VERSION);

// Every command that reads a model repository reads the bundled one when none is named, filled first from the
// packages that carry its models (createServer does that itself, so that serve's log shows what was copied).
program.hook('preAction', async (_program, command) => {
  if (!command.options.some((option) => option.attributeName() === 'modelRepository')) return;
  if (command.getOptionValue('modelRepository') === undefined) command.setOptionValue('modelRepository', BUNDLED_REPOSITORY);
  if (command.name() !== 'serve' && (await isBundledRepository(command.getOptionValue('modelRepository')))) {
    await prepareBundledRepository(commandLogger(), serveFlagName);
  }
});

addServeCommand(program);
addImageCommands(program);
addEvalCommand(program);
addMonitoringCommands(program);
addPromoteCommand(program);
addTuneCommand(program);
addQuantizeCommand(program);
addBatchCommands(program);

// Run from a checkout's dist/ (not through tsx from src/): say when that build is older than the sources.
const runningFile = fileURLToPath(import.meta.url);
if (basename(dirname(runningFile)) === 'dist') {
  const warning = staleBuildWarning(dirname(dirname(runningFile)));
  if (warning) console.error(`nereid: warning: ${warning}`);
}

const tritonFlag = process.argv[2] === 'serve' ? process.argv.slice(3).map((arg) => arg.split('=')[0]).find((name) => Object.hasOwn(TRITON_SERVE_FLAGS, name)) : undefined;
if (tritonFlag) {
  console.error(`nereid: ${tritonFlag} is tritonserver's flag; nereid serve takes ${TRITON_SERVE_FLAGS[tritonFlag]} (docs/triton-compatibility.md)`);
  process.exit(1);
}

program.parseAsync().catch((error: Error) => {
  const command = process.argv[2] ?? '';
  if (BATCH_COMMANDS.has(command)) endBatchCommand(error, program);
  const failed = VERDICT_COMMANDS.has(command) ? EXIT_NOT_DONE : 1;
  // Commander has printed its own refusal (help and --version end with 0).
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : failed);
  // A schema's refusal of an option reads as the option and what it needs, not as zod's issue list.
  console.error(`nereid: ${error instanceof ZodError ? describeOptionIssues(error, program) : error.message}`);
  process.exit(failed);
});
