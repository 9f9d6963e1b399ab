#!/usr/bin/env node
/**
 * The `nereid` command. Flag names follow Triton's tritonserver where a Triton flag exists.
 */
import { access, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format } from 'node:util';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Logger } from 'pino';
import { ZodError } from 'zod';
// Only what the commands' definitions need (their options' schemas and defaults) is imported here: each command
// loads its own machinery when it runs, so that `nereid --help` or `nereid batch status` does not load the server,
// ONNX Runtime, Fastify and gRPC first.
import type { HttpClient } from './client/http-client.js';
import { describeIssues } from './config/model-config.js';
import { defaultOf } from './config/schema-defaults.js';
import { hostAndPort } from './core/address.js';
import { AUTH_SCOPES, tokensFor, type AuthScope, type AuthTokens } from './core/auth.js';
import { invalidArgument, quote, quoteName } from './core/errors.js';
import { readNamedFile } from './core/named-file.js';
import { OptionError } from './core/options.js';
import { DEFAULT_TLS_CHECK_INTERVAL_S, readClientTlsFiles, readTlsFiles, TLS_FLAGS, TLS_MIN_VERSIONS, tlsValidityProblems } from './core/tls.js';
import { GATE_METRICS } from './eval/accuracy-gate.js';
import { chartFormatOf } from './eval/chart-format.js';
import { DEFAULT_TOP_K, evalOptionsSchema } from './eval/eval-options.js';
import { OUTPUT_KINDS } from './eval/output-comparison.js';
import { grpcFlagName, grpcFrontEndOptionsSchema } from './frontends/grpc/grpc-options.js';
import type { GrpcFrontEnd } from './frontends/grpc/v2-grpc.js';
import { httpFlagName, httpFrontEndOptionsSchema } from './frontends/http/http-options.js';
import { BATCH_EXIT, batchFailure } from './jobs/batch-outcome.js';
import { DEFAULT_QUEUE_NAME, redisConnection, shownRedisUrl } from './jobs/chunk-queue.js';
import { batchWorkerSettingsSchema, distributedJobSettingsSchema, localJobSettingsSchema } from './jobs/job-options.js';
import type { ImageTimings } from './model/image-classification.js';
import { worstLevel, type DriftLevel } from './monitoring/drift-report.js';
import { profileCommand, REFERENCE_PROFILE_FILE } from './monitoring/reference-profile.js';
import { slidingWindowOptionsSchema } from './monitoring/sliding-window.js';
import { versionMonitorOptionsSchema } from './monitoring/version-monitor.js';
import { createLogger } from './observability/log-output.js';
import { tracingSettingsSchema } from './observability/tracing.js';
import { DEFAULT_GATES, quantizeOptionsSchema } from './quantize/quantize-options.js';
import { BUNDLED_REPOSITORY, isBundledRepository, prepareBundledRepository, repositoryForHints } from './repository/bundled-repository.js';
import { parseMemoryBudget } from './server/model-residency.js';
import { serveFlagName, serverOptionsSchema } from './server/server-options.js';
import type { Server } from './server/server.js';
import { profileOptionsSchema } from './tools/profile-options.js';
import { staleBuildWarning } from './tools/stale-build.js';
import { TRITON_SERVE_FLAGS } from './tools/triton-flags.js';
import { tuneOptionsSchema } from './tools/tune-options.js';
import { VERSION } from './version.js';

function integer(min: number, max = Infinity) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(max === Infinity ? `expected an integer >= ${min}` : `expected an integer from ${min} to ${max}`);
    return parsed;
  };
}

/** Node's timers take at most 2^31 − 1 ms (about 24.8 days); a longer one fires at once. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;
/** A duration flag in milliseconds, bounded by what a timer can wait. */
const milliseconds = (min: number) => integer(min, LONGEST_TIMER_MS);
const LONGEST_TIMER_S = Math.floor(LONGEST_TIMER_MS / 1000);
/** A duration flag in seconds, bounded by what a timer can wait. */
const seconds = (min: number) => number(min, LONGEST_TIMER_S);

/**
 * `--model-repository` of the commands that read one repository (batch, eval, quantize, tune…): given twice, the second
 * would silently win and the first folder's models go unserved; `nereid serve` takes several (repositories()).
 */
function oneRepository(value: string, previous: string | undefined): string {
  // The same folder twice (a wrapper's default and its caller's own) names one repository.
  if (previous !== undefined && resolve(previous) !== resolve(value)) {
    throw new InvalidArgumentError(
      `--model-repository is given more than once ('${previous}', then '${value}'): this command reads one model repository (nereid serve takes several); name the one that holds the model`,
    );
  }
  return value;
}

/**
 * `nereid serve`'s `--model-repository`, which may be given several times as Triton's may: every folder is served, a
 * model's name in one of them only; the same folder given twice (a wrapper's default and its caller's own) counts once.
 */
function repositories(value: string, previous: string[] | undefined): string[] {
  const folders = previous ?? [];
  return folders.some((folder) => resolve(folder) === resolve(value)) ? folders : [...folders, value];
}

function port(value: string): number {
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || parsed > 65_535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return parsed;
}

/** A redis:// URL, refused before anything starts when it is not one. */
function redisUrl(value: string): string {
  try {
    redisConnection(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message.replace(/^--queue /, ''));
  }
  return value;
}

function booleanFlag(value: string): boolean {
  if (['true', '1', 'on', 'yes'].includes(value.toLowerCase())) return true;
  if (['false', '0', 'off', 'no'].includes(value.toLowerCase())) return false;
  throw new InvalidArgumentError('expected true or false');
}

const collect = (value: string, previous: string[]) => [...previous, value];
/** A comma-separated list, repeatable: '--x a,b --x c' is [a, b, c]. */
const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((part) => part.trim()).filter((part) => part !== '')];

/** A chart file name, refused before any work when its extension names no format the chart is written in. */
function chartPath(value: string): string {
  try {
    chartFormatOf(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return value;
}

/**
 * Refuses, before a long run, a file it would fail to write at the end: a folder, or a file that cannot be created or
 * opened. The file is opened (and removed again if new) rather than its folder checked with access(), which lets root
 * "write" where no file can be made, as in /proc.
 */
async function checkWritableFile(flag: string, file: string): Promise<void> {
  if (/[\\/]$/.test(file) || (await stat(file).catch(() => undefined))?.isDirectory()) {
    throw new Error(`${flag} ${file}: is a folder; expected a file name, e.g. ${join(file, `chart${extname(file) || '.svg'}`)}`);
  }
  const existed = await access(file).then(() => true, () => false);
  try {
    await (await open(file, 'a')).close();
  } catch (error) {
    throw new Error(`${flag} ${file}: its folder does not exist or cannot be written (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); expected a file in a folder this user can write to`);
  }
  if (!existed) await rm(file, { force: true });
}

/**
 * Makes --log-file's folder (each missing level in turn, so a path through a file or a pseudo file system such as
 * /proc fails at once, naming the flag, where a recursive mkdir reports EEXIST or never returns) and checks that the
 * file can be opened for appending.
 */
async function prepareLogFile(file: string): Promise<void> {
  const refuse = (problem: string): never => {
    throw new Error(`--log-file ${file}: ${problem}; expected a file in a folder this user can write to`);
  };
  if (/[\\/]$/.test(file) || (await stat(file).catch(() => undefined))?.isDirectory()) refuse('is a folder');
  const missing: string[] = [];
  let folder = dirname(resolve(file));
  for (;;) {
    const found = await stat(folder).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : refuse(`${folder} cannot be read (${error.code})`)));
    if (found) {
      if (!found.isDirectory()) refuse(`${folder} is a file, not a folder`);
      break;
    }
    missing.unshift(folder);
    const parent = dirname(folder);
    if (parent === folder) break;
    folder = parent;
  }
  for (const level of missing) {
    await mkdir(level).catch((error: NodeJS.ErrnoException) => refuse(`its folder ${level} cannot be created (${error.code ?? error.message})`));
  }
  await open(file, 'a').then(
    (handle) => handle.close(),
    (error: NodeJS.ErrnoException) => refuse(`cannot be opened for appending (${error.code ?? error.message})`),
  );
}

/**
 * Ends the process now by the signal's default action (status 128 + its number: 130 for SIGINT, 143 for SIGTERM).
 * process.exit would tear Node down while ONNX Runtime may still be computing on its threads, and that run's
 * completion then aborts the process (status 134, a core dump). The kernel ignores a default-action signal sent to
 * PID 1 (a container's entrypoint without an init): there, and should the signal not end the process at once, it exits
 * with the same status as best it can.
 */
function endBySignal(signal: 'SIGINT' | 'SIGTERM'): void {
  const status = signal === 'SIGINT' ? 130 : 143;
  if (process.pid === 1) process.exit(status);
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  setTimeout(() => process.exit(status), 1_000);
}

/** Whether binding `host` keeps the server on this machine. */
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** A number flag within [min, max]; `open` leaves out a bound, as the option's schema does (a share of 0 or 1 is none or all). */
function number(min: number, max = Infinity, open: { min?: boolean; max?: boolean } = {}) {
  const expected =
    max === Infinity
      ? `a number ${open.min ? '>' : '>='} ${min}`
      : `a number ${open.min ? 'above' : 'from'} ${min} ${open.max ? 'and below' : open.min ? 'and up to' : 'to'} ${max}`;
  return (value: string): number => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed) || parsed < min || parsed > max || (open.min && parsed === min) || (open.max && parsed === max)) {
      throw new InvalidArgumentError(`expected ${expected}`);
    }
    return parsed;
  };
}

/** A version flag: a folder name of the model, 1, 2, … */
function versionNumber(value: string): string {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('expected a version number: 1, 2, …');
  return value;
}

/** A schema's refusal names the flag that gave the value (holdOut → --hold-out), not the option's field. */
function describeOptionIssues(error: ZodError): string {
  const flags = new Map(program.commands.flatMap((command) => command.options).map((option) => [option.attributeName(), option.long]));
  const named = error.issues.map((issue) => {
    const [head, ...rest] = issue.path;
    const flag = typeof head === 'string' ? flags.get(head) : undefined;
    return flag ? { ...issue, path: [flag, ...rest] } : issue;
  });
  return describeIssues(new ZodError(named), '', '(options)');
}

/** Where each scope's token is read from the environment ('all': the HTTP token, which opens every scope). */
const TOKEN_ENV = { all: 'NEREID_HTTP_AUTH_TOKEN', inference: 'NEREID_INFERENCE_AUTH_TOKEN', management: 'NEREID_MANAGEMENT_AUTH_TOKEN', metrics: 'NEREID_METRICS_AUTH_TOKEN' } as const;

/**
 * Bearer tokens by scope from the flags, the environment (NEREID_<SCOPE>_AUTH_TOKEN, HTTP meaning all)
 * and --auth-token-file, so that tokens need not appear on a command line other users can read.
 */
async function authTokensOf(flags: Record<string, unknown>): Promise<AuthTokens> {
  const tokens: Record<AuthScope | 'all', string[]> = { all: [], inference: [], management: [], metrics: [] };
  const flagOf = { all: 'httpAuthToken', inference: 'inferenceAuthToken', management: 'managementAuthToken', metrics: 'metricsAuthToken' } as const;
  /** A token that can never match (inner spaces, characters clients cannot send) or is empty is refused where it comes from, not met as 401s. */
  const checked = (token: string, from: string) => {
    if (token === '') throw new Error(`${from} is empty: give a token, or leave it out to run without one`);
    if (/\s/.test(token)) throw new Error(`${from} holds whitespace inside the token, which no Authorization header can carry`);
    // curl sends a header's bytes as UTF-8 and Node reads them as Latin-1; gRPC metadata takes printable ASCII only.
    const unsendable = token.match(/[^\x21-\x7e]/u)?.[0];
    if (unsendable) throw new Error(`${from} holds a character other than printable ASCII (${quote(unsendable)}), which curl and gRPC metadata cannot send`);
    return token;
  };
  for (const scope of Object.keys(tokens) as (keyof typeof tokens)[]) {
    const given = (flags[flagOf[scope]] as string[] | undefined) ?? [];
    tokens[scope].push(...given.map((token) => checked(token, `--${flagOf[scope].replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`)));
    // A secret mounted from a file usually ends with a newline: it is not part of the token.
    const fromEnv = process.env[TOKEN_ENV[scope]];
    if (fromEnv !== undefined) tokens[scope].push(checked(fromEnv.trim(), TOKEN_ENV[scope]));
  }
  if (typeof flags.authTokenFile === 'string') {
    const text = (await readNamedFile(flags.authTokenFile, '--auth-token-file')).toString('utf8');
    const before = Object.values(tokens).flat().length;
    text.split(/\r?\n/).forEach((line, index) => {
      // A comment starts a line or follows a space: inside a token '#' is one of its characters.
      const content = line.replace(/(^|\s)#.*/, '').trim();
      if (!content) return;
      const [scope, token, ...rest] = content.split(/\s+/);
      // An own property only: `in` would take constructor or __proto__ (Object.prototype's) for a scope.
      const isScope = (word: string | undefined) => word !== undefined && Object.hasOwn(tokens, word);
      if (!isScope(scope) || !token || rest.length > 0) {
        // What was found is quoted where it cannot be the secret itself: a word in the scope's place is, unless a scope follows it.
        const found = !isScope(scope)
          ? isScope(token)
            ? `the token before its scope '${token}'`
            : token === undefined
              ? 'one word, not a scope'
              : // A short word of letters is a misspelt scope; anything else may be a token written first, and is not repeated.
                /^[a-z_-]{1,16}$/i.test(scope) ? `unknown scope ${quoteName(scope)}` : 'a first word that is not a scope (not repeated here: it may be a token)'
          : !token
            ? `scope '${scope}' with no token`
            : `${rest.length + 2} words`;
        throw new Error(`--auth-token-file line ${index + 1}: ${found} (expected '<scope> <token>' with scope all, inference, management or metrics)`);
      }
      tokens[scope as keyof typeof tokens].push(checked(token, `--auth-token-file line ${index + 1}`));
    });
    // Asked for protection and got none: running open would be the wrong way to fail.
    if (Object.values(tokens).flat().length === before) throw new Error(`--auth-token-file ${flags.authTokenFile} holds no token (lines '<scope> <token>', scope all, inference, management or metrics)`);
  }
  // A deployment that means to be protected (Helm with auth.existingSecret) says so: a Secret that is
  // missing or misspelt then stops the start instead of serving open on every interface.
  if (/^(1|true|yes)$/i.test(process.env.NEREID_REQUIRE_AUTH ?? '') && Object.values(tokens).flat().length === 0) {
    throw new Error(`NEREID_REQUIRE_AUTH is set but no token arrived (${Object.values(TOKEN_ENV).join(', ')}, the --*-auth-token flags or --auth-token-file): refusing to start open`);
  }
  return tokens;
}

/**
 * Why a file of secrets (tokens, a private key) is worth a warning, as ssh would say it: every user of the machine may
 * read it, or its group may and the server's user owns it (so could chmod it). A file another user owns and shares
 * with the server's group (a Kubernetes secret volume at 0440 with fsGroup) is how it is meant to be read.
 */
async function secretFileExposure(path: string, flag: string): Promise<string | undefined> {
  const { stat } = await import('node:fs/promises');
  const { mode, uid } = await stat(path).catch(() => ({ mode: 0, uid: -1 }));
  const everyone = (mode & 0o004) !== 0;
  const ownGroup = (mode & 0o040) !== 0 && uid === process.getuid?.();
  if (!everyone && !ownGroup) return undefined;
  return `${flag} ${path} can be read by ${everyone ? 'every user of this machine' : 'its group'} (mode ${(mode & 0o777).toString(8)}): it holds secrets; chmod 600 it (readable by the server's user only)`;
}

/**
 * A scope with no token of its own (and no 'all' token) stays open, so that protecting one does not
 * lock the others; when some scope has a token, an operator is told which exposed ones are open.
 */
function warnOfOpenScopes(tokens: AuthTokens, exposed: Record<Exclude<AuthScope, 'inference'>, boolean>, host: string, logger: Logger): void {
  if (!AUTH_SCOPES.some((scope) => tokensFor(tokens, scope).length > 0)) {
    if (!isLoopbackHost(host)) {
      logger.warn(`listening on ${host} with no token: inference, model management and metrics are open to anyone who can reach this machine (--http-auth-token, NEREID_HTTP_AUTH_TOKEN or --auth-token-file closes them)`);
    }
    return;
  }
  const open = AUTH_SCOPES.filter((scope) => (scope === 'inference' || exposed[scope]) && tokensFor(tokens, scope).length === 0);
  for (const scope of open) logger.warn(`the ${scope} scope has no token while another scope has one: it is open to anyone who can reach its port (--${scope}-auth-token or --http-auth-token closes it)`);
}

/** Exit status of a command that judges (eval, quantize, tune, monitor) when it could not judge: a bad option, data or model it cannot read, an internal error. */
const EXIT_NOT_DONE = 2;
const VERDICT_COMMANDS = new Set<string>();

/**
 * A command whose exit status 1 is its verdict (a gate failed, an objective unmet, drift), so that a failure to run
 * exits 2 and CI can tell a typo from a failed gate; commander's own refusals exit 2 too.
 */
function verdictCommand(name: string, verdict: string): Command {
  VERDICT_COMMANDS.add(name);
  return program
    .command(name)
    .exitOverride()
    .addHelpText('after', ['', 'Exit status:', '  0    done, and the verdict passed', `  1    ${verdict}`, `  ${EXIT_NOT_DONE}    not done: a bad or missing option, a model or data that cannot be read, an internal error`].join('\n'));
}

/** serve's --allow-code-models, for the commands that load a repository's models in their own process. */
function allowCodeModelsOption(): Option {
  return new Option('--allow-code-models', 'models may run code from the repository (backend "javascript" handlers), as serve\'s flag; off, such a model is refused').default(false);
}

/** The flags of every command that talks to a running server at --url: its token and TLS, one set for all. */
function serverConnectionOptions(command: Command, scope: 'inference' | 'management'): Command {
  return command
    .option('--token <token>', `with --url: ${scope === 'inference' ? 'an' : 'a'} ${scope} token, when the server requires one (env ${TOKEN_ENV[scope]}, else ${TOKEN_ENV.all})`)
    .option('--tls-ca <pem>', "with an https --url: the CA certificate (PEM file) that signed the server's, trusted instead of Node's built-in CAs")
    .option('--tls-cert <pem>', 'with an https --url: a client certificate (PEM file) for a server that requires one (mutual TLS); needs --tls-key')
    .option('--tls-key <pem>', 'the private key of --tls-cert (PEM file, unencrypted)');
}

/** The values of --url and serverConnectionOptions' flags. */
interface ServerConnectionFlags {
  url?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** A client of the server at --url with the token and TLS files serverConnectionOptions' flags (or the environment) give. */
async function serverClient(flags: ServerConnectionFlags, scope: 'inference' | 'management'): Promise<HttpClient> {
  // A secret mounted from a file usually ends with a newline: it is not part of the token.
  const token = (flags.token ?? process.env[TOKEN_ENV[scope]] ?? process.env[TOKEN_ENV.all])?.trim();
  const tls = await readClientTlsFiles({ ca: flags.tlsCa, cert: flags.tlsCert, key: flags.tlsKey });
  const { HttpClient } = await import('./client/http-client.js');
  try {
    return new HttpClient({ url: flags.url!, ...(token ? { token } : {}), ...(tls ? { tls } : {}) });
  } catch (error) {
    // The client names its option as a library caller gave it; here the user gave a flag.
    if (error instanceof OptionError) throw new OptionError(error.message.replace("HttpClient: option 'url'", '--url'));
    throw error;
  }
}

/**
 * The warnings of a command that runs to its end (eval, quantize, tune, batch…): lines for the person who ran it, on
 * stderr, whatever stderr is — a server's JSON lines are for a collector, these are read beside the command's report.
 */
const commandLogger = () => createLogger({ level: 'warn', fd: 2, format: 'text' });

/** --log-verbose 0 logs at info, 1 at debug, 2 or more at trace, as Triton's verbosity grows. */
function logLevel(verbose: number): string {
  return verbose >= 2 ? 'trace' : verbose === 1 ? 'debug' : 'info';
}

// Defaults come from each component's options schema, so --help shows the values the components apply.
const serverDefault = <K extends keyof typeof serverOptionsSchema.shape & string>(key: K) => defaultOf(serverOptionsSchema, key);
const grpcDefault = <K extends keyof typeof grpcFrontEndOptionsSchema.shape & string>(key: K) => defaultOf(grpcFrontEndOptionsSchema, key);
const distributedDefault = <K extends keyof typeof distributedJobSettingsSchema.shape & string>(key: K) => defaultOf(distributedJobSettingsSchema, key);
const workerDefault = <K extends keyof typeof batchWorkerSettingsSchema.shape & string>(key: K) => defaultOf(batchWorkerSettingsSchema, key);

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

program
  .command('serve')
  .description('serve the models of a repository over HTTP and gRPC (KServe Open Inference Protocol V2)')
  .option(
    '--model-repository <dir>',
    'model repository folder (<model>/<version>/model.onnx); repeat it to serve several, each model in one of them only; default: the example repository that ships with Nereid',
    repositories,
  )
  .option('--host <address>', 'address to bind; use 0.0.0.0 to accept connections from other machines', '127.0.0.1')
  .option('--http-port <port>', 'HTTP port (0 picks a free one)', port, 8000)
  .option('--grpc-port <port>', "gRPC port (0 disables gRPC, Triton's meaning)", port, 8001)
  .option('--grpc-max-message-bytes <n>', 'largest gRPC message received or sent; larger ones get RESOURCE_EXHAUSTED', integer(1), grpcDefault('maxReceiveMessageBytes'))
  .option('--grpc-keepalive-time-ms <ms>', 'ping a gRPC connection after this long without activity', milliseconds(1), grpcDefault('keepaliveTimeMs'))
  .option('--grpc-keepalive-timeout-ms <ms>', 'close a gRPC connection whose ping is not answered within this', milliseconds(1), grpcDefault('keepaliveTimeoutMs'))
  .option('--grpc-max-concurrent-streams <n>', 'calls one gRPC connection may have open at once (clients queue the rest)', integer(1), grpcDefault('maxConcurrentStreams'))
  .option('--grpc-max-connections <n>', 'gRPC connections kept open at once; more are refused at connect', integer(1), grpcDefault('maxConnections'))
  .option('--grpc-reflection <bool>', 'serve gRPC reflection when the optional package @grpc/reflection is installed', booleanFlag, grpcDefault('reflection'))
  .addOption(
    new Option(
      '--model-control-mode <mode>',
      "'none' loads every model at start; 'explicit' enables the load/unload API; 'poll' loads every model at start, then loads, reloads and unloads as the repository's files change; 'on_demand' loads pinned models at start and every other on its first request, unloading the least recently used idle ones to keep within --model-memory-budget",
    )
      .choices(serverOptionsSchema.shape.modelControlMode.unwrap().options)
      .default(serverDefault('modelControlMode')),
  )
  .option('--repository-poll-secs <seconds>', 'in poll mode, seconds between two scans of the model repository', seconds(0.001), serverDefault('repositoryPollSecs'))
  .option('--load-model <name>', "in explicit or on_demand mode, a model to load at start ('*' for all); repeatable", collect, [])
  .option(
    '--model-memory-budget <bytes>',
    "memory the loaded models may take (each charged its resident-set growth at load): bytes (8GB, 512MiB) or a fraction of the machine's (0.5); on-demand models beyond it are unloaded, least recently used first",
    (value: string) => {
      // Checked here, where the message can name the flag (the server would name its option).
      try {
        parseMemoryBudget(value, totalmem());
      } catch (error) {
        throw new InvalidArgumentError((error as Error).message);
      }
      return value;
    },
  )
  .option('--pin-model <name>', 'in on_demand mode, a model loaded at start and never unloaded to make room; repeatable', collect, [])
  .option('--model-load-wait-ms <ms>', 'the longest a request waits for its on-demand model to load (else 503 with Retry-After)', milliseconds(1), serverDefault('modelLoadWaitMs'))
  .option('--strict-readiness <bool>', 'ready only while every model loaded at start is ready', booleanFlag, serverDefault('strictReadiness'))
  .option('--exit-on-error [bool]', "exit 1 (after a drain) when a model loaded at start fails, as Triton's --exit-on-error does by default, so that a supervisor sees a crash instead of a server that never becomes ready (--exit-on-error=false, Triton's spelling, keeps it off)", booleanFlag, false)
  .option('--allow-code-models', 'load models that run code from the repository (backend "javascript" handlers): off by default, since that is code execution', false)
  .option(
    '--allow-client-shm',
    "let clients register system shared memory regions (/dev/shm objects) and send tensors through them, as Triton's flag: off by default, since the server then reads and writes objects a client names",
    false,
  )
  .option(
    '--client-shm-from-any-address',
    'with --allow-client-shm, let clients at any address register regions (a container sharing this machine\'s IPC namespace but not its network); by default only loopback clients may, since a client elsewhere that names an object has the server read and write another program\'s shared memory',
    false,
  )
  .option('--default-max-batch-size <n>', 'max_batch_size given to models whose config leaves it out', integer(0), serverDefault('defaultMaxBatchSize'))
  .option('--max-queue-size <n>', 'requests a model version may queue before refusing more', integer(1), serverDefault('maxQueueSize'))
  .option('--max-queue-bytes <n>', 'bytes of inputs a model version may queue before refusing more (config max_queue_bytes may lower it)', integer(1), serverDefault('maxQueueBytes'))
  .option(
    '--max-queue-wait-ms <ms>',
    "under overload, refuse at once (503, Retry-After) a request whose estimated queue wait is longer than this, when it has neither a deadline nor a rejecting queue timeout of its own (those then decide)",
    milliseconds(1),
    serverDefault('maxQueueWaitMs'),
  )
  .option('--max-inflight-bytes <n>', 'bytes of request bodies held at once across the server (read, inflated, queued, running); beyond it 503', integer(1), serverDefault('maxInflightBytes'))
  .option('--reclaim-idle-memory <bool>', 'once the server is quiet for a second after a burst of large requests (ArrayBuffers grown by 64 MiB), run one full garbage collection so their memory is freed, then hand malloc\'s free pages back to the system (glibc malloc_trim)', booleanFlag, true)
  .option(
    '--cache-config <spec>',
    "response cache: 'local,size=BYTES' (in memory) or 'redis,host=H,port=P[,password=…]' (shared); models opt in with response_cache { enable: true }",
  )
  .option('--http-max-body-bytes <n>', 'largest HTTP request body accepted, inflated bytes of a compressed body too', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxBodyBytes'))
  .option('--http-headers-timeout-ms <ms>', "a connection's request headers must arrive within this (else 408, closed)", milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'headersTimeoutMs'))
  .option('--http-request-timeout-ms <ms>', 'a whole request, body included, must arrive within this (else 408, closed)', milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'requestTimeoutMs'))
  .option('--http-keep-alive-timeout-ms <ms>', 'idle keep-alive connections are closed after this', milliseconds(1), defaultOf(httpFrontEndOptionsSchema, 'keepAliveTimeoutMs'))
  .option('--http-max-connections <n>', 'HTTP connections open at once; more are closed as they arrive', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxConnections'))
  .option(
    '--shutdown-timeout <seconds>',
    'on SIGTERM/SIGINT/SIGHUP: readiness turns false, requests received are answered and connections closed as they finish; after this many seconds the rest are cut and the process exits',
    integer(1, LONGEST_TIMER_S),
    30,
  )
  .option('--http-max-inflations <n>', 'compressed request bodies inflated at once; more are refused with 503', integer(1), defaultOf(httpFrontEndOptionsSchema, 'maxConcurrentInflations'))
  .option(
    '--http-auth-token <token>',
    'require Authorization: Bearer <token> on every HTTP route, gRPC RPC and the metrics port, health probes excepted (repeatable; env NEREID_HTTP_AUTH_TOKEN)',
    collect,
    [],
  )
  .option('--inference-auth-token <token>', 'a token for inference only: infer, classify, metadata, statistics, monitor, feedback (repeatable; env NEREID_INFERENCE_AUTH_TOKEN)', collect, [])
  .option('--management-auth-token <token>', "a token for the repository API (index, load, unload), trace and log settings and the dashboard's data (/dashboard/api), nothing else (repeatable; env NEREID_MANAGEMENT_AUTH_TOKEN)", collect, [])
  .option('--metrics-auth-token <token>', 'a token for the metrics port only (repeatable; env NEREID_METRICS_AUTH_TOKEN)', collect, [])
  .option('--auth-token-file <path>', "tokens from a file, one '<scope> <token>' per line, scope all|inference|management|metrics ('#' at a line's start or after a space starts a comment)")
  .option('--tls-cert <pem>', 'serve HTTPS, gRPC over TLS and HTTPS metrics with this certificate chain (PEM file); needs --tls-key')
  .option('--tls-key <pem>', 'the private key of --tls-cert (PEM file, unencrypted)')
  .option('--tls-client-ca <pem>', 'mutual TLS: refuse, at the handshake, clients without a certificate signed by this CA (PEM file)')
  .option('--tls-client-crl <pem>', "mutual TLS: the revocation lists of the --tls-client-ca CAs (PEM file, one per CA): a client certificate they list is refused at the handshake")
  .addOption(new Option('--tls-min-version <version>', 'the oldest TLS version accepted on every port (default: TLSv1.2)').choices(TLS_MIN_VERSIONS))
  .option('--tls-ciphers <list>', "the TLS 1.2 cipher suites offered, an OpenSSL cipher list, e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20' (default: Node's, less those with a SHA-1 MAC)")
  .option('--tls-check-interval-s <seconds>', 'how often the TLS files are looked at: changed ones are re-read for new connections (a renewed certificate, a fresh revocation list); 0: never', seconds(0), DEFAULT_TLS_CHECK_INTERVAL_S)
  .option('--log-verbose <level>', 'log verbosity: 0 info, 1 debug, 2 trace', integer(0), 0)
  .addOption(new Option('--log-format <format>', 'log lines as text (for a person) or json (for a collector); default: text on a terminal, else json').choices(['text', 'json']))
  .option('--log-file <path>', 'append logs to this file instead of the terminal')
  // Observability: metrics, traces, access log, cost per prediction.
  .option('--allow-metrics <bool>', 'serve Prometheus metrics on --metrics-port', booleanFlag, true)
  .option('--metrics-port <port>', 'Prometheus metrics port, GET /metrics (0 picks a free one)', port, 8002)
  .addOption(
    new Option('--metrics-compat <names>', "'triton' also exports the per-model counters under Triton's nv_ names, for dashboards written for Triton").choices(['none', 'triton']).default('none'),
  )
  .option('--cost-per-core-hour <usd>', 'price of one core-hour in dollars: cost per 1,000 predictions in metrics and statistics', number(0))
  .addOption(
    new Option('--trace-exporter <exporter>', "OpenTelemetry traces: 'none' (off) or 'otlp' (OTLP/HTTP to --trace-endpoint)")
      .choices(['none', 'otlp'])
      .default('none'),
  )
  .option('--trace-endpoint <url>', 'OTLP/HTTP traces URL', defaultOf(tracingSettingsSchema, 'endpoint'))
  .option('--trace-rate <fraction>', "fraction of new traces recorded, 0..1 (a client traceparent's sampled flag is followed)", number(0, 1), defaultOf(tracingSettingsSchema, 'sampleRate'))
  .option('--dashboard <bool>', 'serve the web dashboard on the HTTP port under /dashboard (behind the management tokens when set)', booleanFlag, defaultOf(httpFrontEndOptionsSchema, 'dashboard'))
  .option('--dashboard-port <port>', 'serve the dashboard on this port of its own (on --host, same tokens and TLS) instead of under /dashboard on the HTTP port; 0 picks a free one', port)
  .option('--jobs-queue <url>', "the Redis queue of batch jobs (redis://host:6379, as `nereid batch --queue`) whose progress and failures the dashboard's jobs page shows", redisUrl)
  .option('--jobs-queue-name <name>', 'the BullMQ queue name of --jobs-queue', DEFAULT_QUEUE_NAME)
  .option('--log-access [bool]', 'log one line per request: method, url, status, ms, request id, model, rows checked and flagged out of distribution', booleanFlag, defaultOf(httpFrontEndOptionsSchema, 'accessLog'))
  // Monitoring of versions with a reference profile (nereid profile): OOD flags, drift windows, accuracy estimates.
  .option('--monitoring <bool>', 'read reference profiles: OOD flags on answers, drift and accuracy windows at /v2/models/<m>/monitor', booleanFlag, true)
  .option('--monitor-window <rows>', 'rows each drift window holds (the most recent)', integer(1), defaultOf(slidingWindowOptionsSchema, 'capacity'))
  .option('--monitor-max-age-s <seconds>', 'rows older than this leave the drift windows', seconds(0.001), defaultOf(slidingWindowOptionsSchema, 'maxAgeMs') / 1000)
  .option('--monitor-evaluate-every <rows>', 'rows between two comparisons of the windows with the profile', integer(1), defaultOf(versionMonitorOptionsSchema, 'evaluateEvery'))
  .action(async (flags) => {
    // Tokens first: a refused token is answered before the server's modules load (a second of CPU).
    const authTokens = await authTokensOf(flags);
    const [{ setLogger: setGrpcLogger }, { createGrpcFrontEnd }, { createHttpFrontEnd, dashboardAddress, replaceHttpTls }, { reloadTlsOnChange }, { createMetricsListener, createTracing, PrometheusMetrics }, { batchJobsSource }, { failedRows, readinessSummary, rowLabel }, { createServer }] =
      await Promise.all([
        import('@grpc/grpc-js'),
        import('./frontends/grpc/v2-grpc.js'),
        import('./frontends/http/v2-http.js'),
        import('./frontends/tls-reload.js'),
        import('./observability/index.js'),
        import('./jobs/batch-status.js'),
        import('./repository/model-repository.js'),
        import('./server/create-server.js'),
      ]);
    if (flags.logFile !== undefined) await prepareLogFile(flags.logFile);
    const logger = createLogger({ level: logLevel(flags.logVerbose), format: flags.logFormat, file: flags.logFile, base: { service: 'nereid' } });
    for (const [flag, path] of [['--auth-token-file', flags.authTokenFile], ['--tls-key', flags.tlsKey]] as const) {
      const exposure = typeof path === 'string' ? await secretFileExposure(path, flag) : undefined;
      if (exposure) logger.warn(exposure);
    }
    // Every port gets the same TLS: a port left plain would be the way around it.
    const tlsFiles = { cert: flags.tlsCert, key: flags.tlsKey, clientCa: flags.tlsClientCa, clientCrl: flags.tlsClientCrl, minVersion: flags.tlsMinVersion, ciphers: flags.tlsCiphers };
    const tls = await readTlsFiles(tlsFiles);
    for (const problem of tls ? tlsValidityProblems(tls, new Date(), TLS_FLAGS) : []) logger.warn(problem);
    if (flags.dashboardPort !== undefined && !flags.dashboard) throw new Error('--dashboard-port serves the dashboard: it cannot go with --dashboard false');
    const fixedPorts = [['--http-port', flags.httpPort], ['--grpc-port', flags.grpcPort], ['--metrics-port', flags.allowMetrics ? flags.metricsPort : 0]].filter(([, port]) => port !== 0);
    for (const [index, [flag, port]] of fixedPorts.entries()) {
      const same = fixedPorts.slice(index + 1).find(([, other]) => other === port);
      if (same) throw new Error(`${flag} and ${same[0]} are both ${port}: each listener needs a port of its own`);
    }
    if (flags.dashboardPort !== undefined && flags.dashboardPort !== 0 && [flags.httpPort, flags.grpcPort, flags.allowMetrics && flags.metricsPort].includes(flags.dashboardPort)) {
      throw new Error(`--dashboard-port ${flags.dashboardPort} is the port of another listener (--http-port, --grpc-port or --metrics-port): give it one of its own`);
    }
    // The dashboard's percentiles come from the metrics' histograms: they are kept for it even without the metrics port.
    const metrics =
      flags.allowMetrics || flags.dashboard
        ? new PrometheusMetrics({ usdPerCoreHour: flags.costPerCoreHour, tritonNames: flags.metricsCompat === 'triton', processMetrics: flags.allowMetrics })
        : undefined;
    const tracing = createTracing({ exporter: flags.traceExporter, endpoint: flags.traceEndpoint, sampleRate: flags.traceRate, settingName: serveFlagName });
    const metricsListener = metrics && flags.allowMetrics ? createMetricsListener(metrics, { logger, authTokens, tls }) : undefined;
    // createServer prepares the bundled repository, so that its log shows what was copied.
    // The preAction hook puts the bundled repository's path in as a string when none was given.
    const given: string[] = [flags.modelRepository ?? BUNDLED_REPOSITORY].flat();
    const modelRepository = given.length === 1 ? given[0] : given;
    const server = await createServer({
      costPerCoreHour: flags.costPerCoreHour,
      observers: [metrics?.observer, tracing?.observer].filter((observer) => observer !== undefined),
      traceSettings: tracing?.settings,
      modelRepository,
      modelControlMode: flags.modelControlMode,
      repositoryPollSecs: flags.repositoryPollSecs,
      loadModels: flags.loadModel,
      modelMemoryBudget: flags.modelMemoryBudget,
      pinModels: flags.pinModel,
      modelLoadWaitMs: flags.modelLoadWaitMs,
      strictReadiness: flags.strictReadiness,
      allowCodeModels: flags.allowCodeModels,
      allowClientShm: flags.allowClientShm,
      clientShmFromAnyAddress: flags.clientShmFromAnyAddress,
      defaultMaxBatchSize: flags.defaultMaxBatchSize,
      maxQueueSize: flags.maxQueueSize,
      maxQueueBytes: flags.maxQueueBytes,
      maxQueueWaitMs: flags.maxQueueWaitMs,
      maxInflightBytes: flags.maxInflightBytes,
      reclaimIdleMemory: flags.reclaimIdleMemory ? {} : false,
      cacheConfig: flags.cacheConfig,
      monitoring: flags.monitoring && { window: { capacity: flags.monitorWindow, maxAgeMs: flags.monitorMaxAgeS * 1000 }, evaluateEvery: flags.monitorEvaluateEvery },
      logger,
      // Its messages name the flags these options came from.
      settingName: serveFlagName,
    });
    metrics?.attach(server);
    const http = createHttpFrontEnd(server, {
      maxBodyBytes: flags.httpMaxBodyBytes,
      maxConcurrentInflations: flags.httpMaxInflations,
      headersTimeoutMs: flags.httpHeadersTimeoutMs,
      requestTimeoutMs: flags.httpRequestTimeoutMs,
      keepAliveTimeoutMs: flags.httpKeepAliveTimeoutMs,
      maxConnections: flags.httpMaxConnections,
      authTokens,
      accessLog: flags.logAccess,
      tls,
      dashboard: flags.dashboard,
      dashboardPort: flags.dashboardPort,
      dashboardHost: flags.host,
      dashboardHistograms: metrics && ((model, version) => metrics.histogramSnapshot(model, version)),
      dashboardJobs: flags.jobsQueue ? batchJobsSource({ queue: flags.jobsQueue, queueName: flags.jobsQueueName }) : undefined,
      settingName: httpFlagName,
    });
    // grpc-js writes its own errors to stderr (a busy port as "E No address added out of total 1 resolved") beside
    // the server's message saying the same: they go to the log, at debug.
    setGrpcLogger({ error: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, format(...args)) });
    // The same tokens guard gRPC and the metrics port: another port must not be a way around them.
    const grpc: GrpcFrontEnd | undefined =
      flags.grpcPort === 0
        ? undefined
        : createGrpcFrontEnd(server, {
            maxReceiveMessageBytes: flags.grpcMaxMessageBytes,
            maxSendMessageBytes: flags.grpcMaxMessageBytes,
            keepaliveTimeMs: flags.grpcKeepaliveTimeMs,
            keepaliveTimeoutMs: flags.grpcKeepaliveTimeoutMs,
            maxConcurrentStreams: flags.grpcMaxConcurrentStreams,
            maxConnections: flags.grpcMaxConnections,
            reflection: flags.grpcReflection,
            authTokens,
            accessLog: flags.logAccess,
            tls,
            settingName: grpcFlagName,
          });
    // server.stop() drains it with the HTTP and gRPC front ends (which attach themselves).
    if (metricsListener) server.attachFrontEnd({ drain: () => metricsListener.close() });
    if (tls && flags.tlsCheckIntervalS > 0) {
      const reload = await reloadTlsOnChange(tlsFiles, tls, {
        intervalMs: flags.tlsCheckIntervalS * 1000,
        logger,
        apply: (next) => {
          replaceHttpTls(http, next);
          grpc?.replaceTls(next);
          metricsListener?.replaceTls(next);
        },
      });
      server.attachFrontEnd({ drain: async () => reload.stop() });
    }
    let stopping = false;
    /** Whether the start's loads have ended; a signal before then takes the models' state as it finds them, for the start's summary. */
    let startEnded = false;
    let cutShort: { signal: string; index: Promise<Awaited<ReturnType<Server['repositoryIndex']>>> } | undefined;
    /** The drain ran out of time, or the operator asked twice: cut what is left and exit. */
    const forceExit = (reason: string) => {
      // What the cut fails, for the operator who must tell clients or rerun work: no access-log line follows for them.
      // The client requests are counted once each, by the front ends; the models they had reached are named beside
      // them, where an ensemble's request shows at the ensemble and at its step, a form's images each.
      const atModels = server.unansweredRequests();
      const cut = server.cutConnections();
      const held = atModels.length === 0 ? 'none held at a model' : `held at models: ${atModels.map(({ model, version, requests }) => `${model} version ${version}: ${requests}`).join(', ')}`;
      logger.warn(
        { unanswered: cut, atModels },
        `${reason}: closing the connections left and ending the process (SIGTERM, status 143); ${cut} client request(s) (HTTP requests, gRPC calls) failed unanswered with their connections, ${held}`,
      );
      endBySignal('SIGTERM');
    };
    const stop = async (signal: string) => {
      if (stopping) return forceExit(`${signal} again during the drain`);
      stopping = true;
      // The drain abandons the loads under way and then unloads everything: what had loaded or failed is read first.
      if (!startEnded) {
        // Bounded: a repository on a stalled volume must not keep SIGTERM from draining.
        const index = server.repositoryIndex().catch(() => []);
        cutShort = { signal, index: Promise.race([index, new Promise<[]>((resolve) => setTimeout(() => resolve([]), 1000).unref())]) };
        await cutShort.index;
      }
      const timeoutMs = flags.shutdownTimeout * 1000;
      logger.info({ signal, shutdownTimeoutS: flags.shutdownTimeout }, 'draining: not ready any more, answering the requests received, then exiting');
      // Set before stop()'s own: at the timeout the process ends at once, rather than wait for the computations still running.
      setTimeout(() => forceExit(`the drain did not finish within --shutdown-timeout ${flags.shutdownTimeout} s`), timeoutMs).unref();
      await server.stop({ timeoutMs });
      await tracing?.shutdown().catch((error: Error) => logger.warn({ err: error }, 'exporting the last traces failed'));
      logger.info('drained; exiting');
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    // A closed terminal or a supervisor's hang-up drains like SIGTERM rather than killing requests in flight.
    process.on('SIGHUP', () => void stop('SIGHUP'));
    // Listen first so probes see "live, not ready" while models load.
    const address = await listening('--http-port', flags.host, flags.httpPort, () => http.listen({ host: flags.host, port: flags.httpPort }), '', flags.dashboardPort === undefined ? [] : [{ flag: '--dashboard-port', port: flags.dashboardPort }]);
    // Fastify names one address of a wildcard bind; the bind itself is what an operator checks exposure by.
    logger.info(`HTTP (KServe V2) listening on ${address}${flags.host === '0.0.0.0' || flags.host === '::' ? ` (bound to ${flags.host}: every address of this machine)` : ''}`);
    if (flags.dashboard) logger.info(`Dashboard on ${dashboardAddress(http) ?? address}/dashboard/${flags.jobsQueue ? `, following the batch jobs of queue '${flags.jobsQueueName}'` : ''}`);
    if (grpc) {
      const port = await listening('--grpc-port', flags.host, flags.grpcPort, () => grpc.listen(flags.host, flags.grpcPort), ' (0 turns gRPC off)');
      logger.info(`gRPC (KServe V2, inference.GRPCInferenceService) listening on ${hostAndPort(flags.host, port)}${tls ? ' (TLS)' : ''}${grpc.reflection ? ', with reflection' : ''}`);
    }
    if (metricsListener) {
      const port = await listening('--metrics-port', flags.host, flags.metricsPort, () => metricsListener.listen(flags.host, flags.metricsPort), ' (--allow-metrics false turns it off)');
      logger.info(`Prometheus metrics on ${tls ? 'https' : 'http'}://${hostAndPort(flags.host, port)}/metrics`);
    }
    if (tracing) logger.info(`OpenTelemetry traces to ${flags.traceEndpoint} (sample rate ${flags.traceRate})`);
    // Once the ports are bound: a bind that fails (an address not of this machine) leaves nothing open to warn of.
    // The management scope is always exposed: trace and logging settings can be changed in any control mode.
    warnOfOpenScopes(authTokens, { management: true, metrics: flags.allowMetrics }, flags.host, logger);
    await server.start();
    startEnded = true;
    if (cutShort) {
      // Not 'NOT ready: 0 ready, 0 failed' from a repository the drain has emptied: the start as the signal found it.
      const found = await cutShort.index;
      const loading = [...new Set(found.filter((row) => row.state === 'LOADING').map((row) => row.name))];
      const still = loading.length > 0 ? `; ${loading.length} model(s) were still loading (${loading.join(', ')}): a load the drain outlasts is abandoned` : '';
      logger.info({ models: found }, `start cut short by ${cutShort.signal}: when it came, ${readinessSummary(found)}${still}`);
      return;
    }
    const index = await server.repositoryIndex();
    // A failed model is worth a warning; one that keeps the server not ready (strict readiness), an error.
    const failedAtStart = failedRows(index);
    const failed = failedAtStart.length > 0;
    logger[server.stopping ? 'info' : !server.ready ? 'error' : failed ? 'warn' : 'info']({ models: index }, `server ${server.ready ? 'ready' : 'NOT ready'}: ${readinessSummary(index)}`);
    if (failed && flags.exitOnError && !server.stopping) {
      const failures = failedAtStart.map((row) => ({ model: row.name, version: row.version, reason: row.reason }));
      const named = failedAtStart.map(rowLabel);
      logger.error(`--exit-on-error: a model failed to load at start (${named.join(', ')}); stopping`);
      await server.stop({ timeoutMs: flags.shutdownTimeout * 1000 });
      // The last line, after the drain's own: `kubectl logs --tail` of a crash-looping pod shows which model, and why.
      const why = failures.map(({ reason }, at) => `${named[at]}: ${reason}`).join('; ');
      logger.error({ failures }, `--exit-on-error: exiting with status 1 because ${failures.length === 1 ? 'a model' : `${failures.length} models`} failed to load at start: ${why}`);
      process.exit(1);
    }
  });

/** A listener's bind, its failure said in terms of the flag that chose the port (the OS's code stays in the cause). */
async function listening<T>(flag: string, host: string, port: number, listen: () => Promise<T>, alternative = '', alsoBinds: { flag: string; port: number }[] = []): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    const text = `${(error as { code?: string }).code ?? ''} ${(error as Error).message}`;
    if (/EADDRNOTAVAIL/.test(text)) throw new Error(`--host ${host} is not an address of this machine; choose another with --host (0.0.0.0: every address)`, { cause: error });
    const problem = /EADDRINUSE/.test(text) ? 'is in use by another process' : /EACCES/.test(text) ? 'may not be bound by this user' : undefined;
    if (problem === undefined) throw error;
    // The same listen may bind another port too (the dashboard's): the error names the port that failed.
    const failedPort = (error as { port?: number }).port ?? ((error as Error).cause as { port?: number } | undefined)?.port;
    const culprit = alsoBinds.find((other) => other.port === failedPort && failedPort !== port) ?? { flag, port };
    throw new Error(`${culprit.flag} ${culprit.port}: ${hostAndPort(host, culprit.port)} ${problem}; choose another with ${culprit.flag}${culprit.flag === flag ? alternative : ''}`, { cause: error });
  }
}

/** What an image command asks of a server in this process for one image: the fields of its line, as the route would answer them. */
type LocalImageCall = (server: Server, image: Buffer) => Promise<object>;

/** The same through a running server: its answer, printed as it is. */
type RemoteImageCall = (client: HttpClient, image: Buffer) => Promise<object>;

/** `nereid classify` and `nereid detect` answer in process as their routes do: the first (only) image's result with its model, version and timing. */
async function routeLine(answer: Promise<{ model: string; version: string; results: object[]; timings: ImageTimings }>): Promise<object> {
  const [{ model, version, results, timings }, { timingAnswer }] = await Promise.all([answer, import('./model/image-classification.js')]);
  return { model_name: model, model_version: version, ...results[0], timing: timingAnswer(timings) };
}

/** The flags of `nereid classify`, `nereid detect` and `nereid ocr` that say where the model runs. */
interface ImageCommandFlags extends ServerConnectionFlags {
  model: string;
  modelVersion?: string;
  modelRepository?: string;
  allowCodeModels: boolean;
}

/**
 * Runs `nereid classify`, `nereid detect` or `nereid ocr` over image files: through a running server
 * (`--url`), or in this process with the model loaded from the repository. One JSON line per file,
 * a bad file reported on its own line; exit code 1 when any failed.
 */
async function runImageCommand(
  files: string[],
  flags: ImageCommandFlags,
  command: Command,
  route: ImageCommandName,
  calls: {
    remote: RemoteImageCall;
    local: LocalImageCall;
    /** Refuses a model the command cannot use, once, before any file is sent (an error ends the command). */
    checkRemote?: (client: HttpClient) => Promise<void>;
    checkLocal?: (server: Server) => Promise<void>;
    print?: (file: string, result: object) => void;
  },
) {
  const { remote, local, print = (file: string, result: object) => console.log(JSON.stringify({ file, ...result })) } = calls;
  // A file that cannot be read is reported on its line like one that is not an image; the others are still answered.
  const images = await Promise.allSettled(
    files.map((file) =>
      readFile(file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EISDIR') throw new Error(`${file} is a folder: nereid ${route} takes image files; for a folder of images, nereid batch --model ${flags.model} --input ${file} --output results.jsonl`);
        throw error;
      }),
    ),
  );
  const model = flags.model;
  const started = performance.now();
  let failed = 0;
  const report = (file: string, error: unknown) => {
    failed += 1;
    print(file, { error: (error as Error).message });
  };
  const summarise = () => {
    console.error(`${files.length} image(s), ${failed} failed, in ${(performance.now() - started).toFixed(1)} ms`);
    process.exitCode = failed ? 1 : 0;
  };
  if (flags.url) {
    // The server at --url loads its models with its own settings: these would otherwise be dropped without a word.
    const localOnly = { modelRepository: '--model-repository', allowCodeModels: '--allow-code-models' } as const;
    for (const [key, flag] of Object.entries(localOnly)) {
      // Asked for, not filled in: every command that reads a repository is given the bundled one when none is named.
      if (['cli', 'env'].includes(command.getOptionValueSource(key) ?? '')) console.error(`nereid ${route}: ${flag} is for a run in this process; with --url the server's own settings decide`);
    }
    const [client, { ClientError }] = await Promise.all([serverClient(flags, 'inference'), import('./client/http-client.js')]);
    await calls.checkRemote?.(client);
    for (const [index, file] of files.entries()) {
      const image = images[index];
      if (image.status === 'rejected') {
        report(file, image.reason);
        continue;
      }
      try {
        print(file, await remote(client, image.value));
      } catch (error) {
        // The server's refusal of one image is that image's line; a server that cannot be reached ends the command.
        if (!(error instanceof ClientError)) throw error;
        report(file, error);
      }
    }
    summarise();
    process.exit(); // with process.exitCode: keep-alive sockets to the server would hold the process a few seconds
  }
  const { createCommandServer } = await import('./server/create-server.js');
  const server = await createCommandServer({ modelRepository: flags.modelRepository!, loadModels: [model], allowCodeModels: flags.allowCodeModels, logger: commandLogger() });
  await server.start();
  try {
    // A version named that the model's policy leaves out (a quantized one, say) is loaded on its own, as eval loads it.
    const version = flags.modelVersion;
    if (version !== undefined && !server.modelReady(model, version)) await server.loadVersions(model, [version]);
    await calls.checkLocal?.(server);
    // One call per file, so a bad file is reported on its own line; the batcher still groups them.
    const answers = await Promise.allSettled(images.map((image) => (image.status === 'rejected' ? Promise.reject(image.reason) : local(server, image.value))));
    answers.forEach((answer, index) => {
      if (answer.status === 'rejected') return report(files[index], answer.reason);
      print(files[index], answer.value);
    });
    summarise();
  } finally {
    await server.close();
  }
}

type ImageCommandName = 'classify' | 'detect' | 'ocr';

/** The options `classify`, `detect` and `ocr` share: which model, and where it runs. */
function imageCommand(name: ImageCommandName, description: string, defaultModel?: string): Command {
  const command = program.command(name).description(description);
  const modelHelp = `model to ${name === 'ocr' ? 'read text' : name} with`;
  if (defaultModel) command.option('--model <name>', modelHelp, defaultModel);
  else command.requiredOption('--model <name>', modelHelp);
  command
    .option('--model-version <version>', 'model version (default: the latest ready one)')
    .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the bundled one)', oneRepository)
    .addOption(allowCodeModelsOption())
    .option('--url <url>', `${name} through a running Nereid server instead (e.g. http://127.0.0.1:8000)`);
  return serverConnectionOptions(command, 'inference').argument('<files...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF)');
}

imageCommand('classify', 'classify image files with a model that declares image pre-processing; prints JSON, one line per file')
  .option('--top-k <n>', 'predictions per image (default: the model\'s top_k)', integer(1))
  .action(async (files: string[], flags, command: Command) => {
    await runImageCommand(
      files,
      flags,
      command,
      'classify',
      {
        remote: (client, image) => client.classify(flags.model, image, { version: flags.modelVersion, topK: flags.topK, contentType: 'application/octet-stream' }),
        local: (server, image) => routeLine(server.classify(flags.model, [image], { version: flags.modelVersion, topK: flags.topK })),
      },
    );
  });

imageCommand('detect', 'find objects in image files with a detection model (bundled: object_detection, COCO-80); prints JSON, one line per file: each object\'s label, score and box in the image\'s pixels', 'object_detection')
  .option('--threshold <p>', 'leave out detections scoring below this (default 0.3)')
  .option('--max-detections <n>', 'at most this many detections per image, the best first (default 20)')
  .option('--iou-threshold <p>', 'boxes of one class overlapping more than this are one object (default 0.5)')
  .action(async (files: string[], flags, command: Command) => {
    // Sent as the route's query, and checked here by the schema the route checks it with: the same message either way, before any model loads.
    const options: Record<string, string> = {};
    if (flags.threshold !== undefined) options.threshold = flags.threshold;
    if (flags.maxDetections !== undefined) options.max_detections = flags.maxDetections;
    if (flags.iouThreshold !== undefined) options.iou_threshold = flags.iouThreshold;
    const { parseDetectionOptions } = await import('./processing/object-detection.js');
    const checked = parseDetectionOptions(options);
    if (checked.problem !== undefined) throw new Error(checked.problem);
    const { threshold, max_detections: maxDetections, iou_threshold: iouThreshold } = checked.options;
    await runImageCommand(
      files,
      flags,
      command,
      'detect',
      {
        remote: (client, image) => client.detect(flags.model, image, { version: flags.modelVersion, threshold, maxDetections, iouThreshold, contentType: 'application/octet-stream' }),
        local: (server, image) => routeLine(server.detect(flags.model, [image], { version: flags.modelVersion, query: options })),
      },
    );
  });

imageCommand('ocr', 'read the text in image files with an OCR pipeline (bundled: ocr, PaddleOCR); prints JSON, one line per file: each text line with its confidence and box in the image\'s pixels, and the time of each phase', 'ocr')
  .option('--text', 'print the text alone: its lines, each file\'s under a "==> file <==" header when there are several')
  .action(async (files: string[], flags, command: Command) => {
    const { ocrAnswerOf } = await import('./pipelines/ocr/ocr-answer.js');
    const model: string = flags.model;
    // The pipeline's one input is the encoded image; sent under the name its metadata gives, so another OCR pipeline works too.
    let input = '';
    const takeImageInput = ({ inputs, outputs }: { inputs: readonly { name: string; datatype: string }[]; outputs: readonly { name: string }[] }) => {
      if (inputs.length !== 1 || inputs[0].datatype !== 'BYTES') {
        const takes = inputs.map((one) => `${one.name} (${one.datatype})`).join(', ') || 'no input';
        throw new Error(`model '${model}' takes ${takes}: nereid ocr needs an OCR pipeline, whose one input is the encoded image (BYTES; bundled: ocr)`);
      }
      if (!outputs.some((output) => output.name === 'text')) {
        const answers = outputs.map((output) => output.name).join(', ') || 'nothing';
        throw new Error(`model '${model}' answers ${answers}: nereid ocr needs an OCR pipeline, whose answer has a 'text' output (bundled: ocr)`);
      }
      input = inputs[0].name;
    };
    const answerLine = (version: string, answer: ReturnType<typeof ocrAnswerOf>) => ({ model_name: model, model_version: version, ...answer });
    const printText = (file: string, result: object) => {
      if (files.length > 1) console.log(`==> ${file} <==`);
      const { lines, error } = result as { lines?: { text: string }[]; error?: string };
      if (error !== undefined) console.error(`nereid ocr: ${file}: ${error}`);
      for (const line of lines ?? []) console.log(line.text);
    };
    await runImageCommand(files, flags, command, 'ocr', {
      checkRemote: async (client) => takeImageInput(await client.modelMetadata(model, flags.modelVersion)),
      checkLocal: async (server) => takeImageInput(await server.modelMetadata(model, flags.modelVersion)),
      remote: async (client, image) => {
        const answer = await client.infer(model, { [input]: { datatype: 'BYTES', shape: [1], data: [image] } }, { version: flags.modelVersion });
        return answerLine(answer.version, ocrAnswerOf(model, answer.outputs));
      },
      local: async (server, image) => {
        const response = await server.infer({ model, version: flags.modelVersion, inputs: [{ name: input, datatype: 'BYTES', shape: [1], data: [image] }] });
        return answerLine(response.version, ocrAnswerOf(model, Object.fromEntries(response.outputs.map((output) => [output.name, output]))));
      },
      print: flags.text ? printText : undefined,
    });
  });

verdictCommand('eval', 'the last version failed --gate')
  .description("score a model's versions side by side on the same examples: against labels (accuracy, per-class figures, calibration; text accuracy for CTC recognisers) and against the first version (agreement, output deltas), with size and speed; with --gate, exit 1 when the last version fails it")
  .requiredOption('--model <name>', 'model to evaluate')
  .requiredOption('--data <path>', "a folder of images (one sub-folder per class, named as the model's labels, or none: unlabelled), or a JSONL or CSV file of input tensors with an optional label field")
  .option('--versions <list>', 'versions to compare, the first as the reference, e.g. 1,2 (default: those the model\'s policy loads)', (value: string) => value.split(',').map((part) => part.trim()))
  .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the example repository that ships with Nereid)', oneRepository)
  .addOption(allowCodeModelsOption())
  .option('--output <name>', 'output to judge (default: the first)')
  .addOption(new Option('--kind <kind>', 'what the output means (default: from its declaration: a vector of scores = classification, labelled matrix = CTC text, any other = a probability map)').choices(OUTPUT_KINDS))
  .option('--threshold <p>', `probability map: values at or above it form the region compared by IoU (default: ${defaultOf(evalOptionsSchema, 'threshold')})`, number(0, 1))
  .option('--top-k <n>', `k of the top-k accuracy, at most the number of classes (default: ${DEFAULT_TOP_K}, or the number of classes when fewer)`, integer(1))
  .option('--gate <clauses>', `what the last version must meet against the first, e.g. "accuracy_drop<=0.005,agreement>=0.99"; metrics: ${Object.keys(GATE_METRICS).join(', ')}`)
  .option('--min-gate-examples <n>', 'examples the gate needs at least; on fewer it fails, whatever the figures', integer(1), defaultOf(evalOptionsSchema, 'minGateExamples'))
  .option('--json', 'print the report as one JSON object')
  .option('--plot <file>', 'also write a chart of the comparison, as SVG (file ending in .svg) or PNG (.png)', chartPath)
  .action(async (flags) => {
    // Found out now rather than after a long evaluation.
    if (flags.plot) await checkWritableFile('--plot', flags.plot);
    const { formatEvalReport, runEval, writeComparisonChart } = await import('./eval/index.js');
    const report = await runEval(
      { modelRepository: flags.modelRepository, allowCodeModels: flags.allowCodeModels, model: flags.model, versions: flags.versions, data: flags.data, output: flags.output, kind: flags.kind, threshold: flags.threshold, topK: flags.topK, gate: flags.gate, minGateExamples: flags.minGateExamples },
      commandLogger(),
    );
    console.log(flags.json ? JSON.stringify(report) : formatEvalReport(report));
    if (flags.plot) {
      await writeComparisonChart(report, flags.plot);
      // On stderr beside --json, whose stdout is the report alone.
      (flags.json ? console.error : console.log)(`wrote ${flags.plot}`);
    }
    process.exitCode = report.gate && !report.gate.passed ? 1 : 0;
  });

program
  .command('profile')
  .addHelpText('after', ['', 'Exit status:', '  0    the profile was written', '  1    not written: a bad or missing option, a model or data that cannot be read, too few examples, an internal error'].join('\n'))
  .description("build a model version's reference profile from in-distribution data (what it was trained or validated on) and store it beside the version as reference.json: an out-of-distribution detector on the representation its classifier head reads, with the threshold set for --false-positive-rate on held-out examples")
  .requiredOption('--model <name>', 'model to profile')
  .requiredOption('--data <path>', "in-distribution examples: a folder of images (through the model's pre-processing), a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors")
  .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
  .option('--version <n>', "version to profile (default: the one the model's policy serves)", versionNumber)
  .option('--false-positive-rate <p>', 'share of held-out in-distribution examples the OOD flag may raise', number(0, 1, { min: true, max: true }), defaultOf(profileOptionsSchema, 'falsePositiveRate'))
  .option('--max-examples <n>', 'examples read at most (80 % fit the detector, 10 % set the threshold, 10 % check it)', integer(50), defaultOf(profileOptionsSchema, 'maxExamples'))
  .option('--tensor <name>', 'representation to score (default: the tensor the classifier head reads, pooled per channel)')
  .option('--json', 'print the summary as one JSON object')
  .action(async (flags) => {
    const { runProfile } = await import('./tools/index.js');
    const profile = await runProfile(
      { modelRepository: flags.modelRepository, model: flags.model, version: flags.version, data: flags.data, falsePositiveRate: flags.falsePositiveRate, maxExamples: flags.maxExamples, tensor: flags.tensor },
      commandLogger(),
    );
    const ood = profile.ood!;
    const summary = {
      path: profile.path,
      examples: profile.provenance.data.examples,
      tensor: ood.tensor,
      features: ood.precision.length,
      threshold: ood.threshold,
      targetFalsePositiveRate: ood.targetFalsePositiveRate,
      heldOutFalsePositiveRate: ood.heldOutFalsePositiveRate,
      monitored: Object.keys(profile.features),
      calibration: profile.calibration ? { examples: profile.calibration.examples, ece: profile.calibration.ece } : undefined,
      warnings: profile.warnings,
      replaced: profile.replaced,
    };
    for (const warning of profile.warnings) console.error(`nereid profile: warning: ${warning}`);
    console.log(
      flags.json
        ? JSON.stringify(summary)
        : [
            `wrote ${summary.path}: ${summary.examples} examples`,
            ...(summary.replaced ? [`replaced ${summary.path} ${'unreadable' in summary.replaced ? `(unreadable: ${summary.replaced.unreadable})` : `(built from ${summary.replaced.examples} examples on ${summary.replaced.created})`}`] : []),
            `OOD detector on '${summary.tensor}' (${summary.features} features): threshold ${summary.threshold.toFixed(2)} for ${(summary.targetFalsePositiveRate * 100).toFixed(1)} % false positives, ${(summary.heldOutFalsePositiveRate * 100).toFixed(1)} % measured on held-out examples`,
            `monitored values: ${summary.monitored.join(', ')}`,
            summary.calibration ? `calibration from the class folders: ECE ${(summary.calibration.ece * 100).toFixed(2)} % over ${summary.calibration.examples} examples` : 'no class folders: no calibration (the accuracy estimate needs one)',
          ].join('\n'),
    );
  });

/** `nereid monitor --url … --fail-on …`'s exit status when the version has no profile, so no state to judge: not 1 (drift), not 0 (a silent pass). */
const EXIT_NOT_MONITORED = 3;

const monitor = verdictCommand('monitor', `the state is at or beyond --fail-on; ${EXIT_NOT_MONITORED}: --fail-on with --url, and the version is not monitored`)
  .description("score new data against a model version's reference profile (nereid profile): how many examples are out of distribution, how far each monitored value (output confidence, entropy, margin, image properties, predicted class shares) has drifted, and the accuracy expected from confidence (realised too when --data has class folders)")
  .requiredOption('--model <name>', 'model whose profile to use')
  .option('--data <path>', 'examples to check: a folder of images, a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors (or --url)')
  .option('--url <url>', "instead of --data: read the live state a running server keeps for the version (its /monitor), e.g. http://127.0.0.1:8000");
serverConnectionOptions(monitor, 'inference')
  .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
  .option('--version <n>', "version (default: the one the model's policy serves)", versionNumber)
  .option('--reference <file>', "a reference profile to compare with instead of the version's own <model>/<version>/reference.json")
  .option('--json', 'print the report, with every example\'s score, as one JSON object')
  .addOption(
    new Option('--fail-on <state>', `exit 1 when the state is this or worse (for CI: warning, or drift); insufficient_data never fails; with --url, exit ${EXIT_NOT_MONITORED} when the version is not monitored (no reference profile)`).choices(['warning', 'drift']),
  )
  .action(async (flags) => {
    const failOn = (state: string) => {
      if (!flags.failOn || state === 'insufficient_data' || worstLevel([state as DriftLevel, flags.failOn]) !== state) return;
      process.exitCode = 1;
      console.error(`nereid monitor: state ${state}, at or beyond --fail-on ${flags.failOn}; exiting 1`);
    };
    if (flags.url) {
      if (flags.data || flags.reference) throw new Error('--url reads the state the server keeps: give it without --data or --reference');
      const live = (await (await serverClient(flags, 'inference')).modelMonitor(flags.model, flags.version)) as unknown as LiveMonitor;
      if (live.monitored) failOn(live.state);
      else if (flags.failOn) {
        // A gate that cannot see the state must not pass: the version serves without drift monitoring.
        process.exitCode = EXIT_NOT_MONITORED;
        console.error(`nereid monitor: --fail-on ${flags.failOn} cannot be judged: ${flags.model} version ${live.version} is not monitored (${live.reason}); exiting ${EXIT_NOT_MONITORED}`);
      }
      if (flags.json) return console.log(JSON.stringify(live));
      console.log(formatLiveMonitor(live, new URL(flags.url).origin));
      return;
    }
    if (!flags.data) throw new Error('give --data <examples> to score, or --url <server> to read the state a running server keeps');
    const { runMonitor } = await import('./tools/index.js');
    const report = await runMonitor({ modelRepository: flags.modelRepository, model: flags.model, version: flags.version, data: flags.data, reference: flags.reference }, commandLogger());
    failOn(report.state);
    if (flags.json) return console.log(JSON.stringify(report));
    const percent = (value: number) => `${(value * 100).toFixed(1)} %`;
    console.log(
      [
        `${report.model} version ${report.version}: ${report.examples} examples, state ${report.state.toUpperCase()}`,
        `out of distribution: ${report.outOfDistribution} (${percent(report.share)}, score above ${report.threshold.toFixed(2)})`,
        ...(report.classShares ? [`predicted class shares: Jensen–Shannon ${report.classShares.divergence.toFixed(4)} bits from the reference (${report.classShares.level})`] : []),
        ...(report.expectedAccuracy === undefined ? [] : [`accuracy expected from confidence: ${percent(report.expectedAccuracy)}${report.realisedAccuracy === undefined ? '' : `; realised (class folders): ${percent(report.realisedAccuracy)}`}`]),
        ...(report.accuracyCaution ? [`caution: ${report.accuracyCaution}`] : []),
        ...(report.realisedAccuracyNote ? [report.realisedAccuracyNote] : []),
        ...featureDriftTable(report.features.map((feature) => ({ ...feature, chance: feature.chancePsi }))),
        ...(report.unreadable.length === 0
          ? []
          : [`left out ${report.unreadable.length} file(s) that could not be read: ${report.unreadable.slice(0, 5).map((file) => `${file.id} (${file.reason})`).join('; ')}${report.unreadable.length > 5 ? '; …' : ''}`]),
      ].join('\n'),
    );
  });

/** The parts of a server's /monitor answer `nereid monitor --url` prints. */
interface LiveMonitor {
  model: string;
  version: string;
  monitored: boolean;
  reason?: string;
  state: string;
  since?: string;
  drift_score?: number;
  state_evaluation?: { at?: string; drift_score?: number };
  transitions?: { from: string; to: string; at: string; score?: number }[];
  thresholds: { warning: number; drift: number };
  window: { rows: number; capacity: number };
  rows_since_load: number;
  ood?: { share?: number; expected_share?: number };
  accuracy?: { expected?: number; realised?: number; labelled: number; caution?: string };
  features: { feature: string; psi: number; chance_psi?: number; ks?: number; level: string; informational?: boolean }[];
}

/** The live state as `nereid monitor` prints a report: the state and why, then one row per monitored value. */
function formatLiveMonitor(live: LiveMonitor, origin: string): string {
  if (!live.monitored) return `${live.model} version ${live.version} (${origin}): not monitored: ${live.reason}`;
  const percent = (value: number | undefined) => (value === undefined ? '—' : `${(value * 100).toFixed(1)} %`);
  const score = (value: number | undefined) => value?.toFixed(3) ?? '—';
  // The last state evaluation need not have moved the state (hysteresis): the move is the last transition, with its own score.
  const moved = live.transitions?.at(-1);
  const move = moved
    ? `the state last moved ${moved.from} → ${moved.to}${moved.score === undefined ? '' : ` on ${score(moved.score)}`} at ${moved.at}`
    : 'the state has not moved since load';
  return [
    `${live.model} version ${live.version} (${origin}): state ${live.state.toUpperCase()} since ${live.since ?? '—'}; ${live.window.rows} of ${live.window.capacity} rows in the window (${live.rows_since_load} since load)`,
    `drift score now ${score(live.drift_score)}, at the last state evaluation ${score(live.state_evaluation?.drift_score)} (${live.state_evaluation?.at ?? '—'}); ${move} (warning ${live.thresholds.warning}, drift ${live.thresholds.drift})`,
    ...(live.ood ? [`out of distribution: ${percent(live.ood.share)} of the window (expected ${percent(live.ood.expected_share)})`] : []),
    ...(live.accuracy ? [`accuracy expected from confidence: ${percent(live.accuracy.expected)}${live.accuracy.labelled > 0 ? `; realised on ${live.accuracy.labelled} labelled rows: ${percent(live.accuracy.realised)}` : ''}`] : []),
    ...(live.accuracy?.caution ? [`caution: ${live.accuracy.caution}`] : []),
    ...featureDriftTable(live.features.map((feature) => ({ ...feature, chance: feature.chance_psi }))),
  ].join('\n');
}

/**
 * One row per monitored value, as both kinds of `nereid monitor` report print them. The level is judged on PSI beyond
 * what chance gives a window of its size, so that column is shown beside the raw PSI the thresholds would seem to read.
 */
function featureDriftTable(features: readonly { feature: string; psi: number; chance?: number; ks?: number; level: string; informational?: boolean }[]): string[] {
  return [
    '| value | PSI | PSI beyond chance | KS D | level |',
    '|---|---:|---:|---:|---|',
    ...features.map(
      (feature) =>
        `| ${feature.feature} | ${feature.psi.toFixed(3)} | ${Math.max(0, feature.psi - (feature.chance ?? 0)).toFixed(3)} | ${feature.ks?.toFixed(3) ?? '–'} | ${feature.level}${feature.informational ? ' (not counted: images are resized)' : ''} |`,
    ),
  ];
}

/** How the calibration set was used, where the method calibrates ranges at all (dynamic and fp16 do not). */
function calibrationDetail({ ranges, biasCorrection }: { ranges?: string; biasCorrection?: boolean }): string {
  const parts = [ranges, biasCorrection ? 'biases corrected' : undefined].filter((part) => part !== undefined);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** NAME=D1,D2,…: one input's dims after the batch dimension. */
function inputShape(value: string, previous: Record<string, number[]> | undefined): Record<string, number[]> {
  const match = /^([^=]+)=(\d+(?:,\d+)*)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected NAME=D1,D2,… (e.g. x=3,48,320), got '${value}'`);
  return { ...previous, [match[1]]: match[2].split(',').map(Number) };
}

const integerList = (value: string): number[] => {
  const values = value.split(',').map(Number);
  if (values.some((entry) => !Number.isInteger(entry) || entry < 1)) throw new InvalidArgumentError(`expected positive integers separated by commas, got '${value}'`);
  return values;
};

/** Which nodes stayed float and why, while the list is short enough to read on one line (quantization.json has them all). */
function floatNodesShown(floatNodes: readonly { node: string; reason: string }[]): string {
  if (floatNodes.length === 0 || floatNodes.length > 8) return floatNodes.length === 0 ? '' : ' (quantization.json lists them)';
  return ` (${floatNodes.map(({ node, reason }) => `${node}: ${reason}`).join('; ')})`;
}

/** Names separated by commas, from each time the flag is given. */
const nodeNames = (value: string, previous: string[]): string[] => {
  const names = value.split(',').map((name) => name.trim());
  if (names.some((name) => name === '')) throw new InvalidArgumentError(`expected node names separated by commas, got '${value}'`);
  return [...previous, ...names];
};

/** 1=90,2=10: version → weight. */
function versionWeights(value: string): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const part of value.split(',')) {
    const match = /^([1-9]\d*)=(\d+(?:\.\d+)?)$/.exec(part.trim());
    if (!match) throw new InvalidArgumentError(`expected VERSION=WEIGHT pairs separated by commas (e.g. 1=90,2=10), got '${part}'`);
    weights[match[1]] = Number(match[2]);
  }
  return weights;
}

const promote = program
  .command('promote')
  .description("shift a running server's traffic between a model's versions (its canary weights), without a reload; needs --model-control-mode explicit or on_demand on the server")
  .requiredOption('--model <name>', 'model whose traffic to shift')
  .requiredOption('--weights <pairs>', 'VERSION=WEIGHT pairs, e.g. 1=50,2=50 or 2=100 to send everything to version 2', versionWeights)
  .option('--url <url>', 'the server', 'http://127.0.0.1:8000');
serverConnectionOptions(promote, 'management').action(async (flags) => {
  const client = await serverClient(flags, 'management');
  const { ClientError } = await import('./client/http-client.js');
  try {
    console.log(JSON.stringify(await client.setTraffic(flags.model, flags.weights)));
  } catch (error) {
    // The server's refusal is the command's answer, printed as it prints a success; a server out of reach is an error.
    if (!(error instanceof ClientError)) throw error;
    console.log(JSON.stringify({ error: error.message }));
    process.exitCode = 1;
  }
});

verdictCommand('tune', 'no config met --p99-ms or --max-cost, or --write could not write the winner')
  .description(
    "find the serving config that does best for a model on this machine by measuring it: the batch curve first, then instance × thread splits and execution thread, batch size, queue delay (fixed, and latency-aware batching), graph optimisation and the model's versions one at a time, each under real requests through the server core; prints the table with the Pareto front, and writes the winner into the config with --write",
  )
  .requiredOption('--model <name>', 'model to tune')
  .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
  .addOption(allowCodeModelsOption())
  .addOption(
    new Option('--concurrency <list>', 'closed-loop client concurrency levels each config is measured at').argParser(integerList).default(defaultOf(tuneOptionsSchema, 'concurrency'), defaultOf(tuneOptionsSchema, 'concurrency').join(',')),
  )
  .option('--p99-ms <ms>', 'objective: the best throughput whose p99 latency stays under this (judged at the levels that meet it; the others must not lose throughput either)', number(0.001))
  .option('--max-cost <usd>', 'objective: the best throughput whose compute cost per 1,000 inferences stays under this', number(0))
  .option('--cost-per-core-hour <usd>', 'price of one core-hour, for costs', number(0), defaultOf(tuneOptionsSchema, 'usdPerCoreHour'))
  .option('--budget-s <seconds>', 'stop starting new measurements after this many seconds', seconds(1), defaultOf(tuneOptionsSchema, 'budgetSeconds'))
  .option('--min-gain <fraction>', 'write another config only when it beats the current one by this much at the level the objective judges, and loses no other level measured by more (below 1/(1 + this)); a fraction from 0 to 1 (0.05: 5 %)', number(0, 1), defaultOf(tuneOptionsSchema, 'minGain'))
  .option('--confirm-rounds <n>', 'rounds in which the current config and the chosen one are measured again in turn before the chosen one is written (its gain must hold in their median, at every level); when it does not, the next of the search\'s best is tried, up to three; 0: trust the search (then only a config that lost no level in it)', integer(0), defaultOf(tuneOptionsSchema, 'confirmRounds'))
  .option('--warmup-s <seconds>', 'warm-up before each measurement', seconds(0), defaultOf(tuneOptionsSchema, 'warmupSeconds'))
  .option('--duration-s <seconds>', 'length of each measurement', seconds(0.1), defaultOf(tuneOptionsSchema, 'durationSeconds'))
  .option('--repeats <n>', 'measurements per concurrency level (the median is kept)', integer(1), defaultOf(tuneOptionsSchema, 'repeats'))
  .option('--max-batch-size <n>', "largest max_batch_size tried (default: 64, or the config's own when larger)", integer(1))
  .option('--input-shape <name=dims>', 'dims after the batch dimension of an input with dynamic dims, e.g. x=3,48,320; for an image input, the synthetic image\'s HEIGHT,WIDTH (default 64,64) (repeatable)', inputShape)
  .option('--over-http', 'send the requests over HTTP on loopback (binary tensors) instead of calling the core in process')
  .option('--chart <file>', 'draw throughput against p99 latency, as .svg or .png', chartPath)
  .option('--write', "write the winner's settings into the model's config (config.yaml/.json), keeping a backup of the old file")
  .option('--dry-run', 'print the settings the winner would write, and write nothing (the default without --write)')
  .option('--json', 'print the whole report as JSON')
  .action(async (flags) => {
    if (flags.write && flags.dryRun) throw new Error('--write and --dry-run contradict each other: --write writes the winner, --dry-run only prints it');
    const [{ formatTuneReport, runTune, settingsToWrite, unmetObjective, writableConfigOf, writeTunedConfig, writeTuneChart }, { Presets, SingleBar }] = await Promise.all([import('./tools/index.js'), import('cli-progress')]);
    // Found out now rather than after the whole search; what is read now is what the result may replace.
    const readAtStart = flags.write ? await writableConfigOf(resolve(flags.modelRepository, flags.model)) : undefined;
    if (flags.chart) await checkWritableFile('--chart', flags.chart);
    const logger = commandLogger();
    const bar = process.stderr.isTTY && !flags.json ? new SingleBar({ format: 'tune |{bar}| {value}/{total} configs | {elapsed} s of {budget} s | {label}', hideCursor: true }, Presets.shades_classic) : undefined;
    bar?.start(1, 0, { label: 'starting', elapsed: 0, budget: flags.budgetS });
    const report = await runTune(
      {
        modelRepository: flags.modelRepository,
        allowCodeModels: flags.allowCodeModels,
        model: flags.model,
        concurrency: flags.concurrency,
        p99Ms: flags.p99Ms,
        maxCostUsd: flags.maxCost,
        usdPerCoreHour: flags.costPerCoreHour,
        budgetSeconds: flags.budgetS,
        minGain: flags.minGain,
        confirmRounds: flags.confirmRounds,
        warmupSeconds: flags.warmupS,
        durationSeconds: flags.durationS,
        repeats: flags.repeats,
        maxBatchSizeLimit: flags.maxBatchSize,
        inputShapes: flags.inputShape,
        overHttp: Boolean(flags.overHttp),
      },
      logger,
      (progress) => {
        bar?.setTotal(Math.max(progress.planned, progress.done));
        bar?.update(progress.done, { label: progress.label, elapsed: progress.elapsedSeconds.toFixed(0), budget: progress.budgetSeconds });
      },
    ).finally(() => bar?.stop());
    if (flags.chart) await writeTuneChart(report, flags.chart);
    const changed = report.best !== undefined && report.best > 0;
    // A write that fails (the config changed while tune measured) still shows the winner, then exits 1.
    let written: { path: string; backup: string } | undefined;
    let notWritten: string | undefined;
    if (changed && readAtStart) {
      written = await writeTunedConfig(resolve(flags.modelRepository, flags.model), report, readAtStart).catch((error: Error) => {
        notWritten = error.message;
        return undefined;
      });
    }
    if (notWritten) process.exitCode = 1;
    // The backup's path is in the JSON too: a script that wrote a config must be able to undo it.
    if (flags.json) console.log(JSON.stringify({ ...report, written: written ?? null, ...(notWritten ? { notWritten } : {}) }));
    else {
      console.log(formatTuneReport(report, flags.costPerCoreHour));
      if (written) console.log(`wrote ${written.path} (the old one: ${written.backup})`);
      else if (changed) {
        // config.pbtxt (which --write does not edit) or no file: the settings as a new file would take them.
        const file = await writableConfigOf(resolve(flags.modelRepository, flags.model)).catch(() => ({ text: '' }));
        console.log(`settings it would write (--write): ${JSON.stringify(settingsToWrite(report.results[report.best!].candidate, file))}`);
      }
    }
    if (notWritten) console.error(`nereid: ${notWritten}`);
    // A bound nothing met is a failure a script must see; the text report already says it on stdout.
    const unmet = unmetObjective(report);
    if (unmet) {
      process.exitCode = 1;
      if (flags.json) console.error(`nereid: ${unmet}`);
    }
  });

verdictCommand('quantize', 'no version was written (the gate failed, or auto found nothing faster that passes)')
  .description('write a smaller version of a model beside the original — static int8 (QDQ) calibrated on sample inputs, dynamic int8 MatMuls, fp16 weights, or auto: static with the costliest nodes kept float until the gate holds, and only if faster — with its size, speed and agreement on held-out examples (then check it with nereid eval); exit 1 when no version was written')
  .requiredOption('--model <name>', 'model to quantize')
  .requiredOption('--calibration <path>', 'sample inputs: a folder of images (through the model\'s pre-processing), a Parquet file with a column of images, or a JSONL, CSV or Parquet file of input tensors as nereid batch reads them')
  .option('--model-repository <dir>', 'model repository (default: the example repository that ships with Nereid)', oneRepository)
  .option('--version <n>', "version to quantize (default: the newest float version the model's policy serves)", versionNumber)
  .option('--output-version <n>', 'version folder to write (default: one above the highest, or the next free one if another run wrote that meanwhile; under the default version policy it then serves)', versionNumber)
  .addOption(new Option('--method <method>', 'quantization method').choices(quantizeOptionsSchema.shape.method.unwrap().options).default(defaultOf(quantizeOptionsSchema, 'method')))
  .option('--ranges <how>', "activation ranges: 'minmax' or a percentile of the values kept, e.g. 99.99", (value: string) => (value === 'minmax' ? value : number(50, 100, { min: true })(value)), defaultOf(quantizeOptionsSchema, 'ranges'))
  .option('--no-bias-correction', "static and auto: keep Conv and Gemm biases as they are instead of correcting them for the shift their int8 weights cause (from the calibration inputs' channel means)")
  .option('--keep-float <nodes>', "nodes to leave float whatever the method (ONNX Runtime's nodes_to_exclude), by name, comma-separated or repeated; auto's search keeps others float on top of them", nodeNames, [])
  .option('--max-examples <n>', 'calibration examples read at most (--hold-out of them, spread over the data, held out to measure agreement and speed)', integer(5), defaultOf(quantizeOptionsSchema, 'maxExamples'))
  .option('--hold-out <share>', 'share of the examples held out of calibration to judge the gate on', number(0, 1, { min: true, max: true }), defaultOf(quantizeOptionsSchema, 'holdOut'))
  .option('--min-gate-examples <n>', 'held-out examples the gate needs at least; fewer, and nothing is quantized', integer(1), defaultOf(quantizeOptionsSchema, 'minGateExamples'))
  .option('--gate <clauses>', `what the new version must meet on the held-out examples (auto searches until it does); default by output kind: ${Object.entries(DEFAULT_GATES).map(([kind, gate]) => `${kind} "${gate}"`).join(', ')}`)
  .addOption(new Option('--kind <kind>', 'what the first output means (default: from its declaration, as nereid eval reads it)').choices(OUTPUT_KINDS))
  .option('--threshold <p>', 'probability map: values at or above it form the region compared by IoU', number(0, 1), defaultOf(quantizeOptionsSchema, 'threshold'))
  .option('--json', 'print the report as one JSON object')
  .action(async (flags) => {
    const { runQuantize } = await import('./quantize/index.js');
    const started = performance.now();
    const report = await runQuantize(
      {
        modelRepository: flags.modelRepository,
        model: flags.model,
        version: flags.version,
        outputVersion: flags.outputVersion,
        calibration: flags.calibration,
        method: flags.method,
        ranges: flags.ranges,
        biasCorrection: flags.biasCorrection,
        maxExamples: flags.maxExamples,
        keepFloat: flags.keepFloat,
        holdOut: flags.holdOut,
        minGateExamples: flags.minGateExamples,
        gate: flags.gate,
        kind: flags.kind,
        threshold: flags.threshold,
      },
      commandLogger(),
      (phase) => process.stderr.write(`nereid quantize: [${((performance.now() - started) / 1000).toFixed(0)} s] ${phase}\n`),
    );
    process.exitCode = report.decision.written ? 0 : 1;
    // On stderr even with --json: the held-out agreement cannot show it, and a script serving the version should see it.
    if (report.decision.written && report.method === 'dynamic') {
      console.error(
        `nereid quantize: warning: version ${report.outputVersion} is dynamic int8: each batch's activations are quantized with that batch's own range, so behind the dynamic batcher a request's answer can change with the requests batched with it (the agreement above was measured one example at a time); use --method static where answers must not depend on traffic`,
      );
    }
    if (flags.json) return console.log(JSON.stringify(report));
    const { agreement, msPerExample, sizes } = report;
    const percent = (value: number | undefined) => (value === undefined ? '—' : `${(value * 100).toFixed(2)} %`);
    const keptFloat = report.floatNodes.filter((entry) => entry.reason === 'excluded').length;
    console.log(
      [
        report.decision.written ? `${report.model} version ${report.sourceVersion} -> ${report.outputVersion} (${report.path}): ${report.decision.reason}` : `${report.model} version ${report.sourceVersion}: no version written — ${report.decision.reason}`,
        // Dynamic and fp16 calibrate nothing: the examples only judge agreement and speed.
        report.method === 'dynamic' || report.method === 'fp16'
          ? `calibration: none (${report.method === 'dynamic' ? 'dynamic int8 quantizes activations at run time' : 'fp16 keeps activations in float'}); ${report.calibration.heldOut} examples held out judge the gate; sha256 ${report.calibration.sha256.slice(0, 16)}…`
          : `calibration: ${report.calibration.examples} examples${calibrationDetail(report.calibration)}, ${report.calibration.heldOut} held out; sha256 ${report.calibration.sha256.slice(0, 16)}…`,
        // fp16 converts weight tensors, not nodes: its list names initializers.
        report.method === 'fp16'
          ? `weights: ${report.quantizedNodes.length} tensor(s) stored as fp16, ${report.floatNodes.length} left float32`
          : `nodes: ${report.quantizedNodes.length} quantized, ${report.floatNodes.length} left float${floatNodesShown(report.floatNodes)}`,
        ...(report.search ? [`search: ${report.search.map((step) => `${step.floatNodes} float -> ${percent(step.agreement)}${step.passed ? (step.floatNodes === keptFloat ? ' (passes, kept)' : ' (passes)') : ''}`).join(', ')}`] : []),
        `size: ${sizes.sourceBytes} -> ${sizes.quantizedBytes} bytes (${sizes.ratio.toFixed(3)}x)`,
        `held-out agreement (${agreement.measure}): ${percent(agreement.agreement)}${agreement.characterAgreement === undefined ? '' : `, characters ${percent(agreement.characterAgreement)}`}, largest delta of the raw output ${agreement.maxAbsDelta.toFixed(4)}; gate "${report.gate.spec}" ${report.gate.passed ? 'passed' : 'FAILED'}`,
        `ms per example (batch 1, 1 thread): source ${msPerExample.source.toFixed(3)}, quantized ${msPerExample.quantized.toFixed(3)} (${msPerExample.speedup.toFixed(2)}x)`,
      ].join('\n'),
    );
    // Only auto judges speed: a version another method wrote slower than its source is said to be so before it serves.
    if (report.decision.written && msPerExample.speedup < 1) {
      console.error(
        `nereid quantize: warning: version ${report.outputVersion} ran ${msPerExample.speedup.toFixed(2)}x as fast as version ${report.sourceVersion} (batch 1, 1 thread): compare them with nereid eval --versions ${report.sourceVersion},${report.outputVersion} before the model's version_policy serves it (--method auto keeps a model float when int8 is not faster)`,
      );
    }
    // The source's profile describes the float model's features: the new version needs its own to be monitored.
    const sourceProfile = report.path && join(dirname(report.path), report.sourceVersion, REFERENCE_PROFILE_FILE);
    if (sourceProfile && (await access(sourceProfile).then(() => true, () => false))) {
      console.log(`version ${report.outputVersion} has no reference profile, where version ${report.sourceVersion} has one: build it so the new version is monitored too: ${profileCommand(report.model, report.outputVersion!, await repositoryForHints(flags.modelRepository))}`);
    }
  });

// ---------------------------------------------------------------------------------------------
// Batch jobs (offline inference over the same core): `nereid batch`, `nereid batch status`, `nereid worker`.
// Records go to --output (JSONL); the summary goes to stderr as text and to stdout as one JSON line.

// Their exit status tells a script what happened (BATCH_EXIT); with --json a failure is one JSON object on stdout.

/** Whether the command line asks for --json, read from it whole: a refused flag stops commander before it parses those after. */
function jsonAsked(): boolean {
  const args = process.argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

/** Whether the command line writes a job's records to stdout (`--output -`): stdout then carries nothing else. */
function recordsOnStdout(): boolean {
  const args = process.argv.slice(2);
  return args.some((arg, index) => arg === '--output=-' || (arg === '--output' && args[index + 1] === '-'));
}

/**
 * The exit status of a job whose stdout (`--output -`) was closed by its reader (`| head`): a Unix tool's that SIGPIPE
 * ends (128 + 13), which a shell's pipefail reads as such. Nothing more can be written; the job is not resumable anyway.
 */
const STDOUT_CLOSED_EXIT = 141;

/** Ends the process quietly once its reader closed stdout, instead of a stack for an 'error' no one listens to. */
function endQuietlyOnClosedStdout(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(STDOUT_CLOSED_EXIT);
    throw error;
  });
}

/** `nereid batch …` and `nereid worker …`, which end by BATCH_EXIT (the other commands exit 1 on any failure). */
const BATCH_COMMANDS: ReadonlySet<string> = new Set(['batch', 'worker']);

/** The exit statuses a batch command's --help lists: a job's own (`nereid batch`), a reader's (status, cancel) or a worker's. */
function batchExitHelp(kind: 'job' | 'reader' | 'worker'): string {
  const rows = [
    `  ${BATCH_EXIT.ok}    ${kind === 'job' ? "the job ran to its end (records written with their errors included: see the summary's failed)" : kind === 'worker' ? 'stopped by SIGTERM/SIGINT after the chunks in hand' : 'done'}`,
    ...(kind === 'job' ? [`  ${BATCH_EXIT.incomplete}    the job ran but did not end complete: cancelled, chunks lost from Redis, or every record of the job failed`] : []),
    `  ${BATCH_EXIT.usage}    not done as given: a bad or missing option, ${kind === 'worker' ? 'a model repository that is not one' : 'an unknown job, or one whose state refuses it'}`,
    `  ${BATCH_EXIT.unavailable}    could not run: Redis unreachable${kind === 'job' ? ', a model that does not load' : ''}, an internal error`,
    ...(kind === 'job' ? [`  ${BATCH_EXIT.interrupted}  interrupted (SIGINT/SIGTERM) after the records in flight; the same command resumes`] : []),
    ...(kind === 'job' ? [`  ${STDOUT_CLOSED_EXIT}  --output -: stdout closed by its reader (| head), as a tool that SIGPIPE ends`] : []),
  ];
  const json = kind === 'worker' ? [] : [`With --json a failure prints {"error": {"code": "...", "message": "..."}} on stdout instead of text on stderr${kind === 'job' ? ' (on stderr with --output -, whose stdout holds the records)' : ''}.`];
  return ['', 'Exit status:', ...rows, ...json].join('\n');
}

/**
 * A batch command's failure: text on stderr (commander has already printed its own refusals), or with --json one
 * `{"error": {code, message}}` on stdout (on stderr with --output -); then its exit status. Help and --version end with 0.
 */
function endBatchCommand(error: unknown): never {
  if (error instanceof CommanderError && error.exitCode === 0) process.exit(0);
  const refused =
    error instanceof CommanderError
      ? invalidArgument(error.message.replace(/^error: /, ''))
      : error instanceof ZodError
        ? invalidArgument(describeOptionIssues(error))
        : error;
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' && recordsOnStdout()) process.exit(STDOUT_CLOSED_EXIT);
  const failure = batchFailure(refused);
  // With --output - stdout holds the records: the failure there would read as one more.
  if (jsonAsked()) (recordsOnStdout() ? console.error : console.log)(JSON.stringify({ error: failure.error }));
  else if (!(error instanceof CommanderError)) console.error(`nereid: ${failure.error.message}`);
  process.exit(failure.exitCode);
}

/** Commander's refusals (unknown option, bad value, missing option) thrown to endBatchCommand, and with --json not printed. */
function batchCommandErrors(command: Command, kind: 'job' | 'reader' | 'worker'): Command {
  return command
    .exitOverride()
    .configureOutput({ outputError: (text, write) => (jsonAsked() ? undefined : write(text)) })
    .addHelpText('after', batchExitHelp(kind));
}

// `batch status` takes --queue and --job as `batch` does; positional options hand them to the subcommand.
program.enablePositionalOptions();
const batch = batchCommandErrors(program.command('batch'), 'job')
  .description('run a model over a folder of images, a .jsonl or .csv file (or .jsonl.gz, .csv.gz) or a .parquet file; one JSONL output line per record; resumable; in this process or over a Redis queue (--queue)')
  .enablePositionalOptions()
  .option('--model <name>', 'model to run (required)')
  .option('--model-version <version>', 'model version (default: the latest ready one)')
  .option('--input <path>', 'a folder of images (recursive), a .jsonl or .csv file (either may be gzipped: .jsonl.gz, .csv.gz) or a .parquet file (required)')
  .option('--output <path>', 'JSONL output, appended to; rerunning the same command resumes it (required); its folder must exist (it is not created); - writes to stdout (the summary and a --json failure then go to stderr; not resumable; a reader that closes it, as head does, ends the job with exit 141)')
  .option('--model-repository <dir>', 'model repository to load the model from, in this process (default: the example repository that ships with Nereid)', oneRepository)
  .addOption(allowCodeModelsOption())
  .option('--concurrency <n>', "records in flight in this process (default: 4 × the model's max_batch_size); the model's batcher forms the batches", integer(1))
  .option('--top-k <n>', "predictions per image for classifiers (default: the model's top_k)", integer(1))
  .option('--csv-input <name>', 'CSV, Parquet: every numeric column of a row forms this one input, but the columns named id or label and those of --id-column and --pass-through (default: columns are matched to inputs by name; --input-columns picks them)')
  .option('--input-columns <names>', 'CSV or Parquet columns (JSONL fields) that are inputs, comma-separated, in order (default: all but --id-column and --pass-through)', list)
  .option('--id-column <name>', "CSV or Parquet column (JSONL field) whose value is each record's id in the output (default: the line number; a Parquet row's index from 0)")
  .option('--pass-through <names>', 'CSV or Parquet columns (JSONL fields) copied into each output line as "pass_through", e.g. a label; comma-separated', list)
  .option('--restart', 'empty the output (and, with --queue, the job\'s chunks) and start over', false)
  .option('--retry-failed', 'run again the records the output holds with an error', false)
  .option('--allow-all-failed', 'exit 0 even when every record of the job failed, resumed ones included (each is written with its error either way)', false)
  .addOption(
    new Option('--progress <mode>', 'progress on stderr: a bar on a terminal, a line every 2 s otherwise')
      .choices(localJobSettingsSchema.shape.progress.unwrap().options)
      .default(defaultOf(localJobSettingsSchema, 'progress')),
  )
  .option('--queue <url>', 'distribute over workers through this Redis (redis://host:port); see `nereid worker`')
  .option('--queue-name <name>', 'BullMQ queue the workers listen to', distributedDefault('queueName'))
  .option('--job <name>', 'distributed job name (default: the model and a hash of input, output and version)')
  .option('--chunk-size <n>', 'records per queued chunk', integer(1), distributedDefault('chunkSize'))
  .option('--chunk-max-mib <n>', 'MiB of record bytes a queued chunk carries at most (large images, JSONL lines or CSV rows end a chunk sooner; one larger than this fails)', integer(1, 256), distributedDefault('chunkMaxMib'))
  .option('--attempts <n>', 'tries of a chunk before it fails; when no worker can run it (the model missing on the workers…) the job then stops and exits 3, its records left for a rerun, else they are written with the error', integer(1), distributedDefault('attempts'))
  .option('--backoff-ms <ms>', 'wait before a failed chunk is tried again', milliseconds(0), distributedDefault('backoffMs'))
  .option('--max-pending-chunks <n>', 'chunks in Redis at once, submitted and not yet written', integer(1), distributedDefault('maxPendingChunks'))
  .option('--keep-finished-s <s>', "seconds a finished job's hash (for batch status) and failed chunks stay in Redis; 0 keeps them", integer(0), distributedDefault('keepFinishedS'))
  .option('--json', 'a failure before the summary prints {"error": {"code", "message"}} on stdout instead of text on stderr (the summary is a JSON line on stdout either way, with "error" when the exit status is not 0; both go to stderr with --output -)', false)
  .action(async (flags, command: Command) => {
    for (const required of ['model', 'input', 'output'] as const) {
      if (!flags[required]) throw invalidArgument(`batch needs --${required} (see nereid batch --help)`);
    }
    if (flags.queue) {
      // The workers load the model, with their own flags: these would otherwise be dropped without a word.
      // Each with the worker's flag that decides it: records in flight are a worker's --record-concurrency.
      const localOnly = { modelRepository: ['--model-repository', '--model-repository'], allowCodeModels: ['--allow-code-models', '--allow-code-models'], concurrency: ['--concurrency', '--record-concurrency'] } as const;
      for (const [key, [flag, workerFlag]] of Object.entries(localOnly)) {
        if (command.getOptionValueSource(key) === 'cli') console.error(`nereid batch: ${flag} is for a run in this process; with --queue each worker's own flag decides (nereid worker ${workerFlag} …)`);
      }
    } else {
      // A run in this process queues no chunks: these would otherwise be dropped without a word.
      const queuedOnly = { queueName: '--queue-name', job: '--job', chunkSize: '--chunk-size', chunkMaxMib: '--chunk-max-mib', attempts: '--attempts', backoffMs: '--backoff-ms', maxPendingChunks: '--max-pending-chunks', keepFinishedS: '--keep-finished-s' } as const;
      for (const [key, flag] of Object.entries(queuedOnly)) {
        if (command.getOptionValueSource(key) === 'cli') console.error(`nereid batch: ${flag} is for a distributed job (--queue); a run in this process queues no chunks and ignores it`);
      }
    }
    const controller = new AbortController();
    const interrupt = () => {
      if (controller.signal.aborted) return endBySignal('SIGINT');
      console.error('nereid batch: stopping after the records in flight (again to stop now); rerun the same command to continue');
      controller.abort();
    };
    process.on('SIGINT', interrupt);
    process.on('SIGTERM', interrupt);
    if (flags.output === '-') endQuietlyOnClosedStdout();
    const common = {
      model: flags.model,
      version: flags.modelVersion,
      input: flags.input,
      output: flags.output,
      csvInput: flags.csvInput,
      inputColumns: flags.inputColumns,
      idColumn: flags.idColumn,
      passThrough: flags.passThrough,
      topK: flags.topK,
      restart: flags.restart,
      retryFailed: flags.retryFailed,
      progress: flags.progress,
      signal: controller.signal,
      logger: commandLogger(),
    };
    const { batchJobOutcome, formatSummary, runDistributedBatchJob, runLocalBatchJob } = await import('./jobs/index.js');
    const summary = flags.queue
      ? await runDistributedBatchJob({
          ...common,
          queue: flags.queue,
          queueName: flags.queueName,
          job: flags.job,
          chunkSize: flags.chunkSize,
          chunkMaxMib: flags.chunkMaxMib,
          attempts: flags.attempts,
          backoffMs: flags.backoffMs,
          maxPendingChunks: flags.maxPendingChunks,
          keepFinishedS: flags.keepFinishedS,
        })
      : await runLocalBatchJob({ ...common, modelRepository: flags.modelRepository, allowCodeModels: flags.allowCodeModels, concurrency: flags.concurrency });
    console.error(formatSummary(summary));
    // Records left unwritten (their chunks vanished from Redis, or the job was cancelled) are work not done: a script must not take the run as complete.
    const outcome = batchJobOutcome(summary, { allowAllFailed: flags.allowAllFailed });
    const summaryLine = JSON.stringify(outcome.error ? { ...summary, error: outcome.error } : summary);
    // With --output - stdout is the answers': the summary line would read as one more record.
    if (flags.output === '-') console.error(summaryLine);
    else console.log(summaryLine);
    if (outcome.error?.code === 'ALL_RECORDS_FAILED') console.error(`nereid batch: every record of the job failed (${summary.failedTotal}); exiting 1 (--allow-all-failed exits 0)`);
    process.exit(outcome.exitCode);
  });

batchCommandErrors(batch.command('status'), 'reader')
  .description('progress of a distributed batch job: chunks waiting/active/completed/failed, records written; without --job, the queue\'s recent jobs')
  .requiredOption('--queue <url>', 'the Redis of the job (redis://host:port)')
  .option('--job <name>', 'the job name (printed in the summary of `nereid batch --queue`); default: list the 20 most recently submitted jobs')
  .option('--queue-name <name>', 'BullMQ queue of the job', distributedDefault('queueName'))
  .option('--json', 'print the status as JSON, and a failure as {"error": {"code", "message"}}', false)
  .action(async (flags) => {
    const { batchJobList, batchJobStatus, formatStatus } = await import('./jobs/batch-status.js');
    if (flags.job === undefined) {
      const jobs = await batchJobList({ queue: flags.queue, queueName: flags.queueName });
      if (flags.json) console.log(JSON.stringify(jobs));
      else console.log(jobs.length ? jobs.map(formatStatus).join('\n\n') : `no batch jobs in queue '${flags.queueName}' at ${shownRedisUrl(flags.queue)}`);
      process.exit(0);
    }
    const status = await batchJobStatus({ queue: flags.queue, queueName: flags.queueName, job: flags.job });
    console.log(flags.json ? JSON.stringify(status) : formatStatus(status));
    process.exit(0);
  });

batchCommandErrors(batch.command('cancel'), 'reader')
  .description("cancel a distributed batch job: its waiting chunks leave the queue, chunks workers hold run to the end, its submitter stops; nothing written is lost, and the same `nereid batch` command resumes the job")
  .requiredOption('--queue <url>', 'the Redis of the job (redis://host:port)')
  .requiredOption('--job <name>', 'the job name (printed by `nereid batch --queue` and listed by `nereid batch status`)')
  .option('--queue-name <name>', 'BullMQ queue of the job', distributedDefault('queueName'))
  .option('--json', 'print the result as JSON, and a failure as {"error": {"code", "message"}}', false)
  .action(async (flags) => {
    const { cancelBatchJob, formatCancel } = await import('./jobs/batch-status.js');
    const result = await cancelBatchJob({ queue: flags.queue, queueName: flags.queueName, job: flags.job });
    console.log(flags.json ? JSON.stringify(result) : formatCancel(result));
    process.exit(0);
  });

batchCommandErrors(program.command('worker'), 'worker')
  .description('process chunks of distributed batch jobs from a Redis queue; start any number, anywhere with the model repository')
  .requiredOption('--queue <url>', 'Redis to take chunks from (redis://host:port) (required)')
  .option('--queue-name <name>', 'BullMQ queue to listen to', workerDefault('queueName'))
  .option('--model-repository <dir>', 'model repository; models load on demand (default: the example repository that ships with Nereid)', oneRepository)
  .addOption(allowCodeModelsOption())
  .option('--concurrency <n>', 'chunks processed at once', integer(1), workerDefault('concurrency'))
  .option('--record-concurrency <n>', "records in flight within a chunk (default: 4 × the model's max_batch_size)", integer(1))
  .option('--name <name>', 'worker name shown as the processedBy of its chunks (default host:pid)')
  .option('--lock-duration-ms <ms>', 'a chunk whose worker stops renewing its lock this long is given to another worker', milliseconds(100), workerDefault('lockDurationMs'))
  .option('--stalled-interval-ms <ms>', 'how often to look for chunks of dead workers (default: half the lock duration)', milliseconds(100))
  .option('--max-stalled-count <n>', 'times a chunk may be recovered from dead workers before it fails (its records then written with the error: a record that crashes every worker cannot block its job)', integer(0), workerDefault('maxStalledCount'))
  .option('--log-verbose <level>', 'log verbosity: 0 info, 1 debug, 2 trace', integer(0), 0)
  .addOption(new Option('--log-format <format>', 'log lines as text (for a person) or json (for a collector); default: text on a terminal, else json').choices(['text', 'json']))
  .option('--log-file <path>', 'append logs to this file instead of the terminal')
  .option('--metrics-port <port>', 'serve Prometheus metrics on this port, GET /metrics: chunks, records and chunk durations, and the inference metrics of the models run (0 picks a free one; default: none)', port)
  .option('--metrics-host <host>', 'address the metrics port binds', '127.0.0.1')
  .option('--metrics-auth-token <token>', 'require Authorization: Bearer <token> on the metrics port (repeatable; env NEREID_METRICS_AUTH_TOKEN)', collect, [])
  .action(async (flags) => {
    if (flags.logFile !== undefined) await prepareLogFile(flags.logFile);
    const logger = createLogger({ level: logLevel(flags.logVerbose), format: flags.logFormat, file: flags.logFile, fd: 2, base: { service: 'nereid-worker' } });
    const [{ startBatchWorker }, { createMetricsListener, PrometheusMetrics, registerBatchWorkerMetrics }] = await Promise.all([import('./jobs/batch-worker.js'), import('./observability/index.js')]);
    const metrics = flags.metricsPort === undefined ? undefined : new PrometheusMetrics();
    const metricsListener = metrics && createMetricsListener(metrics, { logger, authTokens: await authTokensOf({ metricsAuthToken: flags.metricsAuthToken }) });
    const worker = await startBatchWorker({
      observers: metrics ? [metrics.observer] : undefined,
      onChunk: metrics ? registerBatchWorkerMetrics(metrics.registry) : undefined,
      queue: flags.queue,
      queueName: flags.queueName,
      modelRepository: flags.modelRepository,
      allowCodeModels: flags.allowCodeModels,
      concurrency: flags.concurrency,
      recordConcurrency: flags.recordConcurrency,
      name: flags.name,
      lockDurationMs: flags.lockDurationMs,
      stalledIntervalMs: flags.stalledIntervalMs,
      maxStalledCount: flags.maxStalledCount,
      logger,
    });
    metrics?.attach(worker.server);
    if (metricsListener) {
      const bound = await listening('--metrics-port', flags.metricsHost, flags.metricsPort, () => metricsListener.listen(flags.metricsHost, flags.metricsPort));
      logger.info(`Prometheus metrics on http://${flags.metricsHost}:${bound}/metrics`);
    }
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return endBySignal('SIGINT');
      stopping = true;
      logger.info({ signal }, 'finishing the chunks in hand, then stopping');
      await worker.close();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
  });
// ---------------------------------------------------------------------------------------------

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
  if (BATCH_COMMANDS.has(command)) endBatchCommand(error);
  const failed = VERDICT_COMMANDS.has(command) ? EXIT_NOT_DONE : 1;
  // Commander has printed its own refusal (help and --version end with 0).
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : failed);
  // A schema's refusal of an option reads as the option and what it needs, not as zod's issue list.
  console.error(`nereid: ${error instanceof ZodError ? describeOptionIssues(error) : error.message}`);
  process.exit(failed);
});
