/**
 * Certificates are renewed and revocation lists republished while a server runs (cert-manager, a CA's CRL every few
 * days; an expired list makes OpenSSL refuse every client). The TLS files are looked at every interval and, when one
 * changed, read and checked again and handed to every listener; connections already open keep their session. A
 * change that cannot be used (a key that does not match yet, a list from another CA) is logged and the listeners keep
 * what they had. Problems that come with time — the certificate or a list expiring — are logged when they begin.
 */
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { DEFAULT_TLS_CHECK_INTERVAL_S, readTlsFiles, TLS_FLAGS, tlsValidityProblems, type TlsCredentials, type TlsFiles, type TlsPartNames } from '../core/tls.js';

export interface TlsReloadOptions {
  /** How often the files' modification times are looked at (default DEFAULT_TLS_CHECK_INTERVAL_S). */
  intervalMs?: number;
  logger: Logger;
  /** Gives every listener the credentials just read. */
  apply(credentials: TlsCredentials): void;
  names?: TlsPartNames;
  now?: () => Date;
}

export interface TlsReload {
  /** Looks at the files once now (the timer does the same every interval); resolves when done. */
  check(): Promise<void>;
  stop(): void;
}

const FILE_PARTS = ['cert', 'key', 'clientCa', 'clientCrl'] as const;

/** The files' identity as stat sees it; a file replaced by a rename (a Kubernetes secret's symlink swap) changes too. */
async function fingerprint(files: TlsFiles): Promise<string> {
  const parts = await Promise.all(
    FILE_PARTS.map(async (part) => {
      const path = files[part];
      if (path === undefined) return '';
      return stat(path).then(
        (found) => `${found.ino}:${found.size}:${found.mtimeMs}`,
        (error: NodeJS.ErrnoException) => `missing:${error.code}`,
      );
    }),
  );
  return parts.join('|');
}

export async function reloadTlsOnChange(files: TlsFiles, current: TlsCredentials, options: TlsReloadOptions): Promise<TlsReload> {
  const names = options.names ?? TLS_FLAGS;
  const now = options.now ?? (() => new Date());
  let seen = await fingerprint(files);
  let reported = new Set(tlsValidityProblems(current, now(), names));
  let running: Promise<void> | undefined;

  const reread = async () => {
    const next = await readTlsFiles(files, names);
    if (!next) return;
    if ((next.clientCa === undefined) !== (current.clientCa === undefined)) throw new Error(`mutual TLS cannot be turned ${next.clientCa ? 'on' : 'off'} while running: restart the server`);
    // An expired certificate or list in place of one that still works would turn every client away.
    const [problem] = tlsValidityProblems(next, now(), names);
    if (problem && tlsValidityProblems(current, now(), names).length === 0) throw new Error(problem);
    options.apply(next);
    current = next;
    options.logger.info({ files: Object.fromEntries(FILE_PARTS.filter((part) => files[part] !== undefined).map((part) => [part, files[part]])) }, 'TLS files changed: re-read and in use for new connections');
  };

  const checkOnce = async () => {
    const fresh = await fingerprint(files);
    if (fresh !== seen) {
      seen = fresh;
      await reread().catch((error: Error) =>
        options.logger.error({ err: error }, `TLS files changed but cannot be used (${error.message}): the listeners keep the certificate and lists they had`),
      );
    }
    const problems = tlsValidityProblems(current, now(), names);
    for (const problem of problems) if (!reported.has(problem)) options.logger.error(problem);
    reported = new Set(problems);
  };

  const check = () => (running ??= checkOnce().finally(() => (running = undefined)));
  const timer = setInterval(() => void check().catch((error: Error) => options.logger.error({ err: error }, `looking at the TLS files failed: ${error.message}`)), options.intervalMs ?? DEFAULT_TLS_CHECK_INTERVAL_S * 1000);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}
