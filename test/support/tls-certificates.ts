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
  /** A client certificate signed by a CA the server does not know. */
  strangerClient: Issued;
  remove(): Promise<void>;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function issued(dir: string, name: string): Promise<Issued> {
  const certPath = join(dir, `${name}.pem`);
  const keyPath = join(dir, `${name}.key`);
  return { certPath, keyPath, cert: await readFile(certPath), key: await readFile(keyPath) };
}

async function makeCa(dir: string, name: string): Promise<Issued> {
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
    'x509', '-req', '-in', request, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', String(Date.now()),
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
    strangerClient: await signBy(strangerCa, dir, 'stranger', clientExtensions),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
