/** What several commands share: exit statuses, option sets, a client of a running server, the command logger, ending the process. */
import { Command, Option } from 'commander';
import { ZodError } from 'zod';
import type { HttpClient } from '../client/http-client.js';
import { describeIssues } from '../config/model-config.js';
import { hostAndPort } from '../core/address.js';
import { OptionError } from '../core/options.js';
import { readClientTlsFiles } from '../core/tls.js';
import { createLogger } from '../observability/log-output.js';
import { TOKEN_ENV } from './auth-tokens.js';

/** Exit status of a command that judges (eval, quantize, tune, monitor) when it could not judge: a bad option, data or model it cannot read, an internal error. */
export const EXIT_NOT_DONE = 2;
export const VERDICT_COMMANDS = new Set<string>();

/**
 * A command whose exit status 1 is its verdict (a gate failed, an objective unmet, drift), so that a failure to run
 * exits 2 and CI can tell a typo from a failed gate; commander's own refusals exit 2 too.
 */
export function verdictCommand(program: Command, name: string, verdict: string): Command {
  VERDICT_COMMANDS.add(name);
  return program
    .command(name)
    .exitOverride()
    .addHelpText('after', ['', 'Exit status:', '  0    done, and the verdict passed', `  1    ${verdict}`, `  ${EXIT_NOT_DONE}    not done: a bad or missing option, a model or data that cannot be read, an internal error`].join('\n'));
}

/** serve's --allow-code-models, for the commands that load a repository's models in their own process. */
export function allowCodeModelsOption(): Option {
  return new Option('--allow-code-models', 'models may run code from the repository (backend "javascript" handlers), as serve\'s flag; off, such a model is refused').default(false);
}

/** The flags of every command that talks to a running server at --url: its token and TLS, one set for all. */
export function serverConnectionOptions(command: Command, scope: 'inference' | 'management'): Command {
  return command
    .option('--token <token>', `with --url: ${scope === 'inference' ? 'an' : 'a'} ${scope} token, when the server requires one (env ${TOKEN_ENV[scope]}, else ${TOKEN_ENV.all})`)
    .option('--tls-ca <pem>', "with an https --url: the CA certificate (PEM file) that signed the server's, trusted instead of Node's built-in CAs")
    .option('--tls-cert <pem>', 'with an https --url: a client certificate (PEM file) for a server that requires one (mutual TLS); needs --tls-key')
    .option('--tls-key <pem>', 'the private key of --tls-cert (PEM file, unencrypted)');
}

/** The values of --url and serverConnectionOptions' flags. */
export interface ServerConnectionFlags {
  url?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** A client of the server at --url with the token and TLS files serverConnectionOptions' flags (or the environment) give. */
export async function serverClient(flags: ServerConnectionFlags, scope: 'inference' | 'management'): Promise<HttpClient> {
  // A secret mounted from a file usually ends with a newline: it is not part of the token.
  const token = (flags.token ?? process.env[TOKEN_ENV[scope]] ?? process.env[TOKEN_ENV.all])?.trim();
  const tls = await readClientTlsFiles({ ca: flags.tlsCa, cert: flags.tlsCert, key: flags.tlsKey });
  const { HttpClient } = await import('../client/http-client.js');
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
export const commandLogger = () => createLogger({ level: 'warn', fd: 2, format: 'text' });

/** --log-verbose 0 logs at info, 1 at debug, 2 or more at trace, as Triton's verbosity grows. */
export function logLevel(verbose: number): string {
  return verbose >= 2 ? 'trace' : verbose === 1 ? 'debug' : 'info';
}

/**
 * Ends the process now by the signal's default action (status 128 + its number: 130 for SIGINT, 143 for SIGTERM).
 * process.exit would tear Node down while ONNX Runtime may still be computing on its threads, and that run's
 * completion then aborts the process (status 134, a core dump). The kernel ignores a default-action signal sent to
 * PID 1 (a container's entrypoint without an init): there, and should the signal not end the process at once, it exits
 * with the same status as best it can.
 */
export function endBySignal(signal: 'SIGINT' | 'SIGTERM'): void {
  const status = signal === 'SIGINT' ? 130 : 143;
  if (process.pid === 1) process.exit(status);
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  setTimeout(() => process.exit(status), 1_000);
}

/** A listener's bind, its failure said in terms of the flag that chose the port (the OS's code stays in the cause). */
export async function listening<T>(flag: string, host: string, port: number, listen: () => Promise<T>, alternative = '', alsoBinds: { flag: string; port: number }[] = []): Promise<T> {
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

/** A schema's refusal names the flag that gave the value (holdOut → --hold-out), not the option's field. */
export function describeOptionIssues(error: ZodError, program: Command): string {
  const flags = new Map(program.commands.flatMap((command) => command.options).map((option) => [option.attributeName(), option.long]));
  const named = error.issues.map((issue) => {
    const [head, ...rest] = issue.path;
    const flag = typeof head === 'string' ? flags.get(head) : undefined;
    return flag ? { ...issue, path: [flag, ...rest] } : issue;
  });
  return describeIssues(new ZodError(named), '', '(options)');
}
