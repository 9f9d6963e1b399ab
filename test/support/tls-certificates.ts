/**
 * Real certificates for the TLS tests, made at test time by the openssl command in a temporary
 * folder: a CA that signs the server's certificate (valid for 127.0.0.1 and localhost), a second CA
 * that signs client certificates for mutual TLS, and a stranger CA whose client certificate must be
 * refused. EC P-256 keys, because they are quick to make.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of PEM files, and their contents, for one certificate and its key. */
export interface Issued {
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestCertificates {
  dir: string;
  /** Signs the server's certificate; clients trust it. */
  serverCa: Issued;
  /** The server's certificate (subjectAltName IP:127.0.0.1, DNS:localhost) and key. */
  server: Issued;
  /** Signs the client certificates the server accepts (--tls-client-ca). */
  clientCa: Issued;
  /** A client certificate signed by clientCa. */
  client: Issued;
  /** Another client certificate signed by clientCa, for revocation lists to list. */
  revokedClient: Issued;
  /** A client certificate signed by a CA the server does not know. */
  strangerClient: Issued;
  remove(): Promise<void>;
}

let serial = 0;
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function issued(dir: string, name: string): Promise<Issued> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  return { certPath, keyPath, cert: await readFile(certPath), key: await readFile(keyPath) };
}

export async function makeCa(dir: string, name: string): Promise<Issued> {
  await run('openssl', [
    'req', '-x509', ...EC_KEY, '-days', '2', '-subj', `/CN=Nereid test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`),
  ]);
  return issued(dir, name);
}

async function signBy(ca: Issued, dir: string, name: string, extensions: string): Promise<Issued> {
  const request = join(dir, `${name}.csr`);
  const extensionFile = join(dir, `${name}.ext`);
  await writeFile(extensionFile, extensions);
  await run('openssl', ['req', ...EC_KEY, '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', request]);
  await run('openssl', [
    'x509', '-req', '-in', request, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', String(Date.now() * 1000 + (serial += 1)),
    '-days', '2', '-extfile', extensionFile, '-out', join(dir, `${name}.pem`),
  ]);
  return issued(dir, name);
}

export async function makeTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-tls-'));
  const serverCa = await makeCa(dir, 'server-ca');
  const clientCa = await makeCa(dir, 'client-ca');
  const strangerCa = await makeCa(dir, 'stranger-ca');
  const clientExtensions = 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n';
  return {
    dir,
    serverCa,
    server: await signBy(serverCa, dir, 'server', 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'),
    clientCa,
    client: await signBy(clientCa, dir, 'client', clientExtensions),
    revokedClient: await signBy(clientCa, dir, 'revoked-client', clientExtensions),
    strangerClient: await signBy(strangerCa, dir, 'stranger', clientExtensions),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * A certificate revocation list signed by `ca` that lists `revoked`, as OpenSSL's `ca` command writes it (PEM).
 * `nextUpdate` in the past makes an expired list.
 */
export async function makeRevocationList(ca: Issued, revoked: readonly Issued[], options: { name: string; nextUpdate?: Date }): Promise<{ path: string; crl: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'nereid-crl-'));
  const config = join(dir, 'ca.cnf');
  await writeFile(join(dir, 'index.txt'), '');
  await writeFile(join(dir, 'crlnumber'), '01\n');
  await writeFile(config, `[ca]\ndefault_ca = test\n[test]\ndatabase = ${join(dir, 'index.txt')}\ncrlnumber = ${join(dir, 'crlnumber')}\ndefault_md = sha256\ndefault_crl_days = 2\n`);
  const signer = ['-config', config, '-keyfile', ca.keyPath, '-cert', ca.certPath];
  for (const certificate of revoked) await run('openssl', ['ca', ...signer, '-revoke', certificate.certPath]);
  // OpenSSL's dates are YYYYMMDDHHMMSSZ (GeneralizedTime), given here one hour apart so thisUpdate < nextUpdate.
  const openSslTime = (date: Date) => `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  const dates = options.nextUpdate
    ? ['-crl_lastupdate', openSslTime(new Date(options.nextUpdate.getTime() - 3_600_000)), '-crl_nextupdate', openSslTime(options.nextUpdate)]
    : [];
  const path = join(dir, `${options.name}.crl.pem`);
  await run('openssl', ['ca', ...signer, '-gencrl', ...dates, '-out', path]);
  return { path, crl: await readFile(path) };
}
