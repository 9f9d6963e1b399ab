/**
 * TLS for the listeners (HTTP, gRPC, metrics): a certificate chain with its private key, and
 * optionally a CA that every client must present a certificate from (mutual TLS; without one the
 * handshake is refused), with the CA's revocation lists. Listeners take PEM contents, not paths: the
 * composition root reads the files once at start (readTlsFiles), so a bad file stops the start with a
 * message naming the flag rather than failing the first handshake.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import tlsDefaults, { createSecureContext, type SecureContextOptions } from 'node:tls';
import { z } from 'zod';
import { readNamedFile } from './named-file.js';
import { readRevocationLists, revocationListsProblem } from './revocation-lists.js';

export const TLS_MIN_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export type TlsMinVersion = (typeof TLS_MIN_VERSIONS)[number];

/** How often, in seconds, a server looks at its TLS files for renewed ones when not told (serve's --tls-check-interval-s). */
export const DEFAULT_TLS_CHECK_INTERVAL_S = 30;

export interface TlsCredentials {
  /** The server's certificate chain, PEM: its own certificate first, then intermediates. */
  readonly cert: string | Buffer;
  /** The certificate's private key, PEM, unencrypted. */
  readonly key: string | Buffer;
  /** CA certificates, PEM; when given, a client without a certificate signed by one is refused. */
  readonly clientCa?: string | Buffer;
  /** Revocation lists of the client CAs, PEM, one for each: a client certificate they list is refused. */
  readonly clientCrl?: string | Buffer;
  /** The oldest protocol accepted (default TLS 1.2). */
  readonly minVersion?: TlsMinVersion;
  /** The TLS 1.2 suites offered, an OpenSSL cipher list (default: Node's less those with a SHA-1 MAC). */
  readonly ciphers?: string;
}

/** How messages name each part: option paths for library users, flags for the command line. */
export type TlsPartNames = Readonly<Record<keyof TlsCredentials, string>>;

export const TLS_FLAGS: TlsPartNames = {
  cert: '--tls-cert',
  key: '--tls-key',
  clientCa: '--tls-client-ca',
  clientCrl: '--tls-client-crl',
  minVersion: '--tls-min-version',
  ciphers: '--tls-ciphers',
};
const TLS_OPTION_NAMES: TlsPartNames = {
  cert: 'tls.cert',
  key: 'tls.key',
  clientCa: 'tls.clientCa',
  clientCrl: 'tls.clientCrl',
  minVersion: 'tls.minVersion',
  ciphers: 'tls.ciphers',
};

/**
 * Node's default cipher list less the TLS 1.2 suites with a SHA-1 MAC (the CBC-SHA1 ones its `HIGH` keeps), which no
 * current client needs; TLS 1.3's suites are set apart and stay.
 */
export const DEFAULT_SERVER_CIPHERS = `${tlsDefaults.DEFAULT_CIPHERS}:!SHA1`;

const reason = (error: unknown) => (error as Error).message;

/** What keeps a TLS server from using these credentials, naming the part at fault; undefined when nothing does. */
export function tlsCredentialsProblem(credentials: TlsCredentials, names: TlsPartNames = TLS_OPTION_NAMES): string | undefined {
  let certificate: X509Certificate;
  let key: KeyObject;
  try {
    certificate = new X509Certificate(credentials.cert);
  } catch (error) {
    return `${names.cert} does not hold a PEM certificate (${reason(error)})`;
  }
  try {
    key = createPrivateKey(credentials.key);
  } catch (error) {
    return `${names.key} does not hold an unencrypted PEM private key (${reason(error)})`;
  }
  if (!certificate.checkPrivateKey(key)) {
    return `${names.key} is not the private key of the certificate in ${names.cert} (subject ${certificate.subject.replace(/\n/g, ', ')})`;
  }
  if (credentials.clientCa !== undefined) {
    try {
      new X509Certificate(credentials.clientCa);
    } catch (error) {
      return `${names.clientCa} does not hold a PEM CA certificate (${reason(error)})`;
    }
  }
  if (credentials.clientCrl !== undefined) {
    if (credentials.clientCa === undefined) return `${names.clientCrl} revokes client certificates: it needs ${names.clientCa} (mutual TLS)`;
    try {
      readRevocationLists(credentials.clientCrl, credentials.clientCa, names);
      createSecureContext({ crl: credentials.clientCrl });
    } catch (error) {
      return reason(error);
    }
  }
  if (credentials.ciphers !== undefined) {
    try {
      createSecureContext({ ciphers: credentials.ciphers });
    } catch (error) {
      return `${names.ciphers} '${credentials.ciphers}' names no cipher suite OpenSSL offers (${reason(error)}); e.g. ECDHE+AESGCM:ECDHE+CHACHA20`;
    }
  }
  try {
    createSecureContext(secureContextOptions(credentials));
  } catch (error) {
    return `${names.cert}, ${names.key}${credentials.clientCa === undefined ? '' : ` and ${names.clientCa}`} are refused by TLS: ${reason(error)}`;
  }
  return undefined;
}

/** What OpenSSL is given for one listener: the same for HTTPS, gRPC and the metrics port. */
export function secureContextOptions(credentials: TlsCredentials): SecureContextOptions {
  return {
    cert: credentials.cert,
    key: credentials.key,
    ca: credentials.clientCa,
    crl: credentials.clientCrl,
    minVersion: credentials.minVersion ?? 'TLSv1.2',
    ciphers: credentials.ciphers ?? DEFAULT_SERVER_CIPHERS,
  };
}

/**
 * Why clients will refuse the certificate although the server can use it — expired, or not valid
 * yet — so that the start says so instead of every client failing its handshake; undefined when valid at `now`.
 */
export function certificateValidityProblem(cert: string | Buffer, now = new Date(), name = TLS_OPTION_NAMES.cert): string | undefined {
  const certificate = new X509Certificate(cert);
  const notAfter = new Date(certificate.validTo);
  const notBefore = new Date(certificate.validFrom);
  if (now > notAfter) return `the certificate in ${name} expired on ${notAfter.toISOString()}: clients will refuse every connection until it is renewed`;
  if (now < notBefore) return `the certificate in ${name} is not valid before ${notBefore.toISOString()}: clients will refuse it until then (is this machine's clock right?)`;
  return undefined;
}

/**
 * What makes clients fail although the server could start: the certificate outside its validity, or a revocation list
 * past its next update (OpenSSL then refuses every client of that CA). Said at start, and again when it happens.
 */
export function tlsValidityProblems(credentials: TlsCredentials, now: Date, names: TlsPartNames = TLS_OPTION_NAMES): string[] {
  const lists = credentials.clientCrl !== undefined && credentials.clientCa !== undefined ? readRevocationLists(credentials.clientCrl, credentials.clientCa, names) : [];
  return [certificateValidityProblem(credentials.cert, now, names.cert), revocationListsProblem(lists, now, names.clientCrl)].filter((problem) => problem !== undefined);
}

const pem = z.union([z.string().min(1), z.instanceof(Buffer).refine((buffer) => buffer.length > 0, 'empty')]);

/** The `tls` option every listener takes: absent means plain HTTP / insecure gRPC. */
export const tlsOptionSchema = z
  .object({ cert: pem, key: pem, clientCa: pem.optional(), clientCrl: pem.optional(), minVersion: z.enum(TLS_MIN_VERSIONS).optional(), ciphers: z.string().min(1).optional() })
  .superRefine((credentials, context) => {
    const problem = tlsCredentialsProblem(credentials);
    if (problem) context.addIssue({ code: 'custom', message: problem });
  })
  .optional();

/** Options for node:https (and Fastify's `https`): mutual TLS when a client CA is given. */
export function httpsServerOptions(credentials: TlsCredentials): HttpsServerOptions {
  const mutual = credentials.clientCa !== undefined;
  return { ...secureContextOptions(credentials), requestCert: mutual, rejectUnauthorized: mutual };
}

/** Reads a CA certificate for a client to trust, checking that it is one; `name` is the flag given it. */
export async function readCaFile(path: string, name: string): Promise<Buffer> {
  const ca = await readNamedFile(path, name);
  try {
    new X509Certificate(ca);
  } catch (error) {
    throw new Error(`${name} ${path} does not hold a PEM CA certificate (${reason(error)})`, { cause: error });
  }
  return ca;
}

/**
 * What a client (HttpClient, GrpcClient, the commands that take --url) trusts and presents over TLS: the CA that
 * signed the server's certificate, when a private one did (default: Node's built-in CAs), and, for a server that
 * requires mutual TLS, a certificate of its own with the private key, in PEM.
 */
export const clientTlsOptionsSchema = z.object({
  ca: z.union([z.string(), z.instanceof(Buffer)]).optional(),
  cert: z.union([z.string(), z.instanceof(Buffer)]).optional(),
  key: z.union([z.string(), z.instanceof(Buffer)]).optional(),
});

export type ClientTlsOptions = Readonly<z.input<typeof clientTlsOptionsSchema>>;

export const CLIENT_TLS_FLAGS: Readonly<Record<keyof ClientTlsOptions, string>> = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key' };

/**
 * Reads and checks the PEM files a client was given: none means Node's defaults; a certificate needs its key.
 * Throws an Error whose message names the flag at fault.
 */
export async function readClientTlsFiles(
  paths: { ca?: string; cert?: string; key?: string },
  names: Readonly<Record<keyof ClientTlsOptions, string>> = CLIENT_TLS_FLAGS,
): Promise<ClientTlsOptions | undefined> {
  const ca = paths.ca === undefined ? undefined : await readCaFile(paths.ca, names.ca);
  if (paths.cert === undefined && paths.key === undefined) return ca === undefined ? undefined : { ca };
  const pair = await readCertificateAndKey(paths, names);
  const problem = tlsCredentialsProblem(pair, { ...TLS_OPTION_NAMES, cert: `${names.cert} ${paths.cert}`, key: `${names.key} ${paths.key}`, clientCa: names.ca });
  if (problem) throw new Error(problem);
  return { ...(ca === undefined ? {} : { ca }), ...pair };
}

/** A certificate and its private key, read (not yet checked against each other); both paths or neither must be given. */
async function readCertificateAndKey(paths: { cert?: string; key?: string }, names: { cert: string; key: string }): Promise<{ cert: Buffer; key: Buffer }> {
  if (paths.cert === undefined || paths.key === undefined) {
    throw new Error(`${names.cert} and ${names.key} go together: ${paths.cert === undefined ? names.cert : names.key} is missing`);
  }
  return { cert: await readNamedFile(paths.cert, names.cert), key: await readNamedFile(paths.key, names.key) };
}

/** The files (paths) and settings of a server's TLS, as given on the command line. */
export interface TlsFiles {
  cert?: string;
  key?: string;
  clientCa?: string;
  clientCrl?: string;
  minVersion?: TlsMinVersion;
  ciphers?: string;
}

/**
 * Reads and checks the PEM files a server was given: none means no TLS; a certificate needs its key, a client CA
 * both, and revocation lists a client CA. Throws an Error whose message names the flag at fault.
 */
export async function readTlsFiles(files: TlsFiles, names: TlsPartNames = TLS_FLAGS): Promise<TlsCredentials | undefined> {
  if (files.cert === undefined && files.key === undefined) {
    const needsCertificate = (['clientCa', 'clientCrl', 'minVersion', 'ciphers'] as const).find((part) => files[part] !== undefined);
    if (needsCertificate) throw new Error(`${names[needsCertificate]}${needsCertificate === 'clientCa' ? ' (mutual TLS)' : ''} needs ${names.cert} and ${names.key} too`);
    return undefined;
  }
  const optionalFile = async (part: 'clientCa' | 'clientCrl') => (files[part] === undefined ? {} : { [part]: await readNamedFile(files[part], names[part]) });
  const credentials: TlsCredentials = {
    ...(await readCertificateAndKey(files, names)),
    ...(await optionalFile('clientCa')),
    ...(await optionalFile('clientCrl')),
    ...(files.minVersion === undefined ? {} : { minVersion: files.minVersion }),
    ...(files.ciphers === undefined ? {} : { ciphers: files.ciphers }),
  };
  const withPath = (part: keyof TlsCredentials) => (part === 'minVersion' || part === 'ciphers' ? names[part] : `${names[part]} ${files[part] ?? ''}`.trim());
  const partNames = Object.fromEntries(Object.keys(names).map((part) => [part, withPath(part as keyof TlsCredentials)])) as unknown as TlsPartNames;
  const problem = tlsCredentialsProblem(credentials, partNames);
  if (problem) throw new Error(problem);
  return credentials;
}
