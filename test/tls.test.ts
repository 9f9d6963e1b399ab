/**
 * TLS on every port, with real certificates the openssl command makes for the run: HTTPS, gRPC over
 * TLS and the metrics port over HTTPS, each checked by a client that trusts only the test CA; mutual
 * TLS refusing clients without a certificate from the client CA; start-time checks of the PEM files
 * that name the flag and file at fault; and `nereid serve` / `nereid classify --tls-ca` end to end.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import sharp from 'sharp';
import { Agent, fetch } from 'undici';
import { ConnectionError, GrpcCallError, GrpcClient, HttpClient } from '../src/client/index.js';
import { certificateValidityProblem, readTlsFiles, tlsValidityProblems, type TlsCredentials } from '../src/core/tls.js';
import { createGrpcFrontEnd, type GrpcFrontEnd } from '../src/frontends/grpc/v2-grpc.js';
import { replaceHttpTls } from '../src/frontends/http/v2-http.js';
import { reloadTlsOnChange } from '../src/frontends/tls-reload.js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { createMetricsListener, PrometheusMetrics, type MetricsListener } from '../src/observability/index.js';
import { smallCnnModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, runCli, serveChild, stopChild, type ServedChild } from './support/cli-server.js';
import { makeCa, makeRevocationList, makeTestCertificates, type Issued, type TestCertificates } from './support/tls-certificates.js';
import { startTestServer, writeSimpleModel, type TestServer } from './support/test-server.js';

const { Client } = loadInferenceProto();
type InferenceClient = grpc.Client & Record<string, Function>;

let certificates: TestCertificates;

before(async () => {
  certificates = await makeTestCertificates();
});

after(async () => {
  await certificates?.remove();
});

const serverTls = (clientCa?: Buffer): TlsCredentials => ({ cert: certificates.server.cert, key: certificates.server.key, clientCa });

/** An HTTPS client that trusts only the test server CA, presenting `identity` when given. */
function httpsAgent(identity?: Issued): Agent {
  return new Agent({ connect: { ca: certificates.serverCa.cert, cert: identity?.cert, key: identity?.key } });
}

/** The error a TLS client got, with the OpenSSL reason when there is one (undici wraps it in `cause`). */
async function refusal(request: Promise<unknown>): Promise<string> {
  const error = await request.then(
    () => assert.fail('the server answered a client it should have refused'),
    (error: Error & { cause?: Error & { code?: string } }) => error,
  );
  return `${error.message} ${error.cause?.code ?? ''} ${error.cause?.message ?? ''}`;
}

function grpcClient(port: number, identity?: Issued): InferenceClient {
  const credentials = grpc.credentials.createSsl(certificates.serverCa.cert, identity?.key ?? null, identity?.cert ?? null);
  // A host name, not 127.0.0.1: TLS clients send it as the server name, which may not be an IP address.
  return new Client(`localhost:${port}`, credentials) as InferenceClient;
}

function grpcCall(client: InferenceClient, method: string, request: object): Promise<{ error: grpc.ServiceError | null; response: unknown }> {
  return new Promise((resolve) => client[method](request, (error: grpc.ServiceError | null, response: unknown) => resolve({ error, response })));
}

interface TlsPorts {
  served: TestServer;
  grpcPort: number;
  metricsPort: number;
  /** New credentials for every port, as `nereid serve` hands them over when its TLS files change. */
  replaceTls(tls: TlsCredentials): void;
  close(): Promise<void>;
}

/** The simple model behind all three listeners, each with the same TLS, as `nereid serve` sets them up. */
async function startTlsPorts(tls: TlsCredentials): Promise<TlsPorts> {
  const served = await startTestServer({ models: writeSimpleModel, http: { tls } });
  const grpcFront: GrpcFrontEnd = createGrpcFrontEnd(served.server, { tls });
  const metricsListener: MetricsListener = createMetricsListener(new PrometheusMetrics({ processMetrics: false }).attach(served.server), { tls });
  return {
    served,
    grpcPort: await grpcFront.listen('127.0.0.1', 0),
    metricsPort: await metricsListener.listen('127.0.0.1', 0),
    replaceTls(next: TlsCredentials) {
      replaceHttpTls(served.app, next);
      grpcFront.replaceTls(next);
      metricsListener.replaceTls(next);
    },
    async close() {
      await grpcFront.close();
      await metricsListener.close();
      await served.close();
    },
  };
}

test('a certificate outside its validity period is named at start, with the date clients will hold against it', async () => {
  const certificates = await makeTestCertificates();
  try {
    const { cert } = certificates.server;
    assert.equal(certificateValidityProblem(cert), undefined, 'the run\'s certificate is valid now');
    const farFuture = new Date(Date.now() + 100 * 365 * 24 * 3600 * 1000);
    assert.match(certificateValidityProblem(cert, farFuture, '--tls-cert') ?? '', /^the certificate in --tls-cert expired on \d{4}-\d\d-\d\dT.*: clients will refuse every connection until it is renewed$/);
    assert.match(certificateValidityProblem(cert, new Date(0)) ?? '', /is not valid before .*is this machine's clock right/);
  } finally {
    await certificates.remove();
  }
});

describe('TLS on the HTTP front end, gRPC and the metrics port', () => {
  let ports: TlsPorts;

  before(async () => (ports = await startTlsPorts(serverTls())));

  after(() => ports?.close());

  test('HTTPS answers a client trusting the test CA, with the certificate made for this run', async () => {
    assert.match(ports.served.url, /^https:/);
    const ready = await fetch(`${ports.served.url}/v2/health/ready`, { dispatcher: httpsAgent() });
    assert.equal(ready.status, 200);
    const body = JSON.stringify({
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(3) },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
      ],
    });
    const inferred = await fetch(`${ports.served.url}/v2/models/simple/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: httpsAgent() });
    const answer = (await inferred.json()) as { outputs: { name: string; data: number[] }[] };
    assert.equal(inferred.status, 200);
    assert.deepEqual(answer.outputs.find((output) => output.name === 'OUTPUT0')?.data, Array(16).fill(4));
  });

  test('HTTPS is refused by a client that does not trust the CA, and plain HTTP gets no V2 answer', async () => {
    const untrusting = await refusal(fetch(`${ports.served.url}/v2/health/ready`));
    assert.match(untrusting, /certificate/i);
    const plain = await fetch(ports.served.url.replace('https:', 'http:') + '/v2/health/ready').then(
      (response) => response.status,
      () => 'refused',
    );
    assert.notEqual(plain, 200);
  });

  test('gRPC over TLS answers a client with the CA; an insecure client gets no answer', async () => {
    const secure = grpcClient(ports.grpcPort);
    const insecure = new Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure()) as InferenceClient;
    try {
      const ready = await grpcCall(secure, 'ModelReady', { name: 'simple' });
      assert.equal(ready.error, null);
      assert.deepEqual(ready.response, { ready: true });
      const plain = await grpcCall(insecure, 'ServerLive', {});
      assert.equal(plain.error?.code, grpc.status.UNAVAILABLE);
    } finally {
      secure.close();
      insecure.close();
    }
  });

  test('the metrics port serves /metrics over HTTPS', async () => {
    const scraped = await fetch(`https://127.0.0.1:${ports.metricsPort}/metrics`, { dispatcher: httpsAgent() });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /nereid_inference_request_success_total/);
    assert.match(await refusal(fetch(`https://127.0.0.1:${ports.metricsPort}/metrics`)), /certificate/i);
  });
});

describe('mutual TLS', () => {
  let ports: TlsPorts;

  before(async () => (ports = await startTlsPorts(serverTls(certificates.clientCa.cert))));

  after(() => ports?.close());

  test('HTTPS: a client certificate from the client CA is served; none, or one from another CA, is refused at the handshake', async () => {
    const url = `${ports.served.url}/v2/health/ready`;
    assert.equal((await fetch(url, { dispatcher: httpsAgent(certificates.client) })).status, 200);
    assert.match(await refusal(fetch(url, { dispatcher: httpsAgent() })), /certificate|socket|closed/i);
    assert.match(await refusal(fetch(url, { dispatcher: httpsAgent(certificates.strangerClient) })), /unknown ca|certificate|socket|closed/i);
  });

  test('gRPC: only a client holding a certificate from the client CA gets answers', async () => {
    const trusted = grpcClient(ports.grpcPort, certificates.client);
    const anonymous = grpcClient(ports.grpcPort);
    const stranger = grpcClient(ports.grpcPort, certificates.strangerClient);
    try {
      assert.deepEqual((await grpcCall(trusted, 'ServerLive', {})).response, { live: true });
      assert.equal((await grpcCall(anonymous, 'ServerLive', {})).error?.code, grpc.status.UNAVAILABLE);
      assert.equal((await grpcCall(stranger, 'ServerLive', {})).error?.code, grpc.status.UNAVAILABLE);
    } finally {
      trusted.close();
      anonymous.close();
      stranger.close();
    }
  });

  test('HttpClient and GrpcClient trust the private CA and present a client certificate through the same `tls` option', async () => {
    const { cert, key } = certificates.client;
    const ca = certificates.serverCa.cert;
    const inputs = { INPUT0: { datatype: 'INT32' as const, shape: [1, 16], data: Array(16).fill(3) }, INPUT1: { datatype: 'INT32' as const, shape: [1, 16], data: Array(16).fill(1) } };
    const http = new HttpClient({ url: ports.served.url, tls: { ca, cert, key }, retry: { tries: 1 } });
    const grpcClient = new GrpcClient({ address: `127.0.0.1:${ports.grpcPort}`, tls: { ca, cert, key }, retry: { tries: 1 } });
    const anonymousGrpc = new GrpcClient({ address: `127.0.0.1:${ports.grpcPort}`, tls: { ca }, retry: { tries: 1 } });
    try {
      assert.deepEqual(Array.from((await http.infer('simple', inputs)).outputs.OUTPUT0!.data as Int32Array), Array(16).fill(4));
      assert.deepEqual(Array.from((await grpcClient.infer('simple', inputs)).outputs.OUTPUT0!.data as Int32Array), Array(16).fill(4));
      // Without a certificate of its own the handshake is refused; without the CA the server is not trusted.
      await assert.rejects(new HttpClient({ url: ports.served.url, tls: { ca }, retry: { tries: 1 } }).serverReady(), (error: ConnectionError) => error instanceof ConnectionError && /certificate|socket|closed|reset/i.test(error.message));
      await assert.rejects(new HttpClient({ url: ports.served.url, retry: { tries: 1 } }).serverReady(), /certificate/i);
      await assert.rejects(anonymousGrpc.serverLive(), (error: GrpcCallError) => error.code === grpc.status.UNAVAILABLE);
    } finally {
      http.close();
      grpcClient.close();
      anonymousGrpc.close();
    }
    assert.throws(() => new HttpClient({ url: ports.served.url.replace('https:', 'http:'), tls: { ca } }), /tls \(ca, cert, key\) applies to an https:\/\/ url; got 'http:/);
  });

  test('the metrics port asks for the client certificate too', async () => {
    const url = `https://127.0.0.1:${ports.metricsPort}/metrics`;
    assert.equal((await fetch(url, { dispatcher: httpsAgent(certificates.client) })).status, 200);
    await refusal(fetch(url, { dispatcher: httpsAgent() }));
  });
});

/** Whether a TLS handshake with these client settings completes ('ok') or OpenSSL's reason for refusing it. */
function handshake(port: number, options: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: certificates.serverCa.cert, ...options });
    socket.once('secureConnect', () => (socket.end(), resolve('ok')));
    socket.once('error', (error: Error & { code?: string }) => resolve(error.code ?? error.message));
  });
}

/** Whether each port serves a client holding `identity`: HTTPS health, gRPC ServerLive, metrics. */
async function servedOnEachPort(ports: TlsPorts, identity: Issued): Promise<boolean[]> {
  const https = (url: string) => fetch(url, { dispatcher: httpsAgent(identity) }).then((response) => response.status === 200, () => false);
  const client = grpcClient(ports.grpcPort, identity);
  try {
    return [
      await https(`${ports.served.url}/v2/health/ready`),
      (await grpcCall(client, 'ServerLive', {})).error === null,
      await https(`https://127.0.0.1:${ports.metricsPort}/metrics`),
    ];
  } finally {
    client.close();
  }
}

describe('revocation lists, the minimum version and the cipher list', () => {
  const mutualFiles = (crl: string) => ({ cert: certificates.server.certPath, key: certificates.server.keyPath, clientCa: certificates.clientCa.certPath, clientCrl: crl });

  test('a client certificate its CA revoked is refused on every port, the CA\'s others served; a fresh list is used without a restart', async (t) => {
    const crlPath = join(certificates.dir, 'served.crl.pem');
    await writeFile(crlPath, (await makeRevocationList(certificates.clientCa, [], { name: 'none-revoked' })).crl);
    const lines: Record<string, any>[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    const tls = (await readTlsFiles(mutualFiles(crlPath)))!;
    const ports = await startTlsPorts(tls);
    t.after(() => ports.close());
    const reload = await reloadTlsOnChange(mutualFiles(crlPath), tls, { logger, apply: (next) => ports.replaceTls(next), intervalMs: 3_600_000 });
    t.after(() => reload.stop());
    assert.deepEqual(await servedOnEachPort(ports, certificates.revokedClient), [true, true, true], 'not revoked yet');

    await writeFile(crlPath, (await makeRevocationList(certificates.clientCa, [certificates.revokedClient], { name: 'one-revoked' })).crl);
    await reload.check();
    assert.deepEqual(await servedOnEachPort(ports, certificates.revokedClient), [false, false, false], 'revoked: refused on HTTPS, gRPC and metrics');
    assert.deepEqual(await servedOnEachPort(ports, certificates.client), [true, true, true], 'another certificate of the same CA');
    assert.ok(lines.some((line) => line.msg === 'TLS files changed: re-read and in use for new connections' && line.files.clientCrl === crlPath));

    // A list the CA did not issue would refuse everyone: it is logged and the listeners keep the list they had.
    const stranger = await makeRevocationList(certificates.serverCa, [], { name: 'stranger' });
    await writeFile(crlPath, stranger.crl);
    await reload.check();
    const refused = lines.find((line) => line.level === 50);
    assert.match(refused?.msg ?? '', /^TLS files changed but cannot be used \(--tls-client-crl .*served\.crl\.pem: the revocation list of 'CN=Nereid test server-ca' is not from a CA in --tls-client-ca .*client-ca\.pem \('CN=Nereid test client-ca'\)\): the listeners keep/);
    assert.deepEqual(await servedOnEachPort(ports, certificates.client), [true, true, true]);
    assert.deepEqual(await servedOnEachPort(ports, certificates.revokedClient), [false, false, false]);

    // An expired list in place of one that works would refuse every client: kept out the same way.
    await writeFile(crlPath, (await makeRevocationList(certificates.clientCa, [], { name: 'stale', nextUpdate: new Date(Date.now() - 60_000) })).crl);
    await reload.check();
    assert.match(lines.filter((line) => line.level === 50).at(-1)?.msg ?? '', /^TLS files changed but cannot be used \(the revocation list in --tls-client-crl of 'CN=Nereid test client-ca' \(next update was due .*\) has expired/);
    assert.deepEqual(await servedOnEachPort(ports, certificates.client), [true, true, true]);
  });

  test('lists that would refuse every client are refused at start: none for a CA, from another CA, not signed by it, not a list', async (t) => {
    const work = await mkdtemp(join(tmpdir(), 'nereid-crl-checks-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const own = await makeRevocationList(certificates.clientCa, [], { name: 'own' });
    const files = (crl: string, clientCa = certificates.clientCa.certPath) => ({ ...mutualFiles(crl), clientCa });

    await assert.rejects(readTlsFiles({ ...files(own.path), clientCa: undefined }), { message: `--tls-client-crl ${own.path} revokes client certificates: it needs --tls-client-ca (mutual TLS)` });
    const twoCas = join(work, 'two-cas.pem');
    await writeFile(twoCas, Buffer.concat([certificates.clientCa.cert, certificates.serverCa.cert]));
    await assert.rejects(readTlsFiles(files(own.path, twoCas)), {
      message: `--tls-client-crl ${own.path} has no revocation list of 'CN=Nereid test server-ca' (--tls-client-ca ${twoCas}): OpenSSL would refuse every client certificate it signed`,
    });
    // A CA of the same name with another key: its list names the right issuer but is not the client CA's.
    const impostorDir = await mkdtemp(join(work, 'impostor-'));
    const rekeyed = await makeCa(impostorDir, 'client-ca');
    const impostor = await makeRevocationList(rekeyed, [], { name: 'impostor' });
    await assert.rejects(readTlsFiles(files(impostor.path)), { message: `--tls-client-crl ${impostor.path}: the revocation list of 'CN=Nereid test client-ca' is not signed by that CA's key in --tls-client-ca ${certificates.clientCa.certPath}` });
    // Both keys of a CA being rotated, under one name, each with its list: accepted, as OpenSSL accepts them.
    const rotating = join(work, 'rotating.pem');
    const rotatingLists = join(work, 'rotating.crl.pem');
    await writeFile(rotating, Buffer.concat([certificates.clientCa.cert, rekeyed.cert]));
    await writeFile(rotatingLists, Buffer.concat([impostor.crl, own.crl]));
    assert.ok(await readTlsFiles(files(rotatingLists, rotating)));
    await assert.rejects(readTlsFiles(files(certificates.clientCa.certPath)), { message: `--tls-client-crl ${certificates.clientCa.certPath} holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)` });
    const both = join(work, 'both.crl.pem');
    await writeFile(both, Buffer.concat([own.crl, (await makeRevocationList(certificates.serverCa, [], { name: 'server-ca' })).crl]));
    assert.ok(await readTlsFiles(files(both, twoCas)), 'one list for each CA of the bundle');
  });

  test('an expired list is named at start, with the date and what it does to clients', async () => {
    const expired = await makeRevocationList(certificates.clientCa, [], { name: 'expired', nextUpdate: new Date(Date.now() - 60_000) });
    const tls = (await readTlsFiles(mutualFiles(expired.path)))!;
    const [problem, ...more] = tlsValidityProblems(tls, new Date(), { cert: '--tls-cert', key: '--tls-key', clientCa: '--tls-client-ca', clientCrl: '--tls-client-crl', minVersion: '--tls-min-version', ciphers: '--tls-ciphers' });
    assert.equal(more.length, 0);
    assert.match(problem, /^the revocation list in --tls-client-crl of 'CN=Nereid test client-ca' \(next update was due \d{4}-.*Z\) has expired: every client certificate that CA signed is refused until a fresh list is given$/);
  });

  test('minVersion TLSv1.3 refuses a TLS 1.2 client on every port; by default TLS 1.2 is served, without SHA-1 suites', async (t) => {
    const strict = await startTlsPorts({ ...serverTls(), minVersion: 'TLSv1.3' });
    t.after(() => strict.close());
    const httpsPort = Number(new URL(strict.served.url).port);
    for (const port of [httpsPort, strict.grpcPort, strict.metricsPort]) {
      assert.match(await handshake(port, { maxVersion: 'TLSv1.2', ALPNProtocols: port === strict.grpcPort ? ['h2'] : undefined }), /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/);
      assert.equal(await handshake(port, { minVersion: 'TLSv1.3', ALPNProtocols: port === strict.grpcPort ? ['h2'] : undefined }), 'ok');
    }
    const usual = await startTlsPorts({ ...serverTls(), ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' });
    t.after(() => usual.close());
    const tls12 = (ciphers: string) => ({ maxVersion: 'TLSv1.2' as const, ciphers });
    for (const port of [Number(new URL(usual.served.url).port), usual.grpcPort, usual.metricsPort]) {
      const alpn = port === usual.grpcPort ? { ALPNProtocols: ['h2'] } : {};
      assert.equal(await handshake(port, { ...tls12('ECDHE-ECDSA-AES256-GCM-SHA384'), ...alpn }), 'ok', `TLS 1.2 with the listed suite, port ${port}`);
      assert.match(await handshake(port, { ...tls12('ECDHE-ECDSA-AES128-GCM-SHA256'), ...alpn }), /HANDSHAKE_FAILURE|NO_SHARED_CIPHER/, `a suite left out, port ${port}`);
    }
    const defaults = await startTlsPorts(serverTls());
    t.after(() => defaults.close());
    for (const port of [Number(new URL(defaults.served.url).port), defaults.grpcPort]) {
      const alpn = port === defaults.grpcPort ? { ALPNProtocols: ['h2'] } : {};
      assert.equal(await handshake(port, { ...tls12('ECDHE-ECDSA-AES128-GCM-SHA256'), ...alpn }), 'ok');
      assert.match(await handshake(port, { ...tls12('ECDHE-ECDSA-AES128-SHA'), ...alpn }), /HANDSHAKE_FAILURE|NO_SHARED_CIPHER/, 'CBC with a SHA-1 MAC is not offered');
    }
    await assert.rejects(readTlsFiles({ cert: certificates.server.certPath, key: certificates.server.keyPath, ciphers: 'NO-SUCH-SUITE' }), /^Error: --tls-ciphers 'NO-SUCH-SUITE' names no cipher suite OpenSSL offers \(.*\); e\.g\. ECDHE\+AESGCM:ECDHE\+CHACHA20$/);
    await assert.rejects(readTlsFiles({ minVersion: 'TLSv1.3' }), { message: '--tls-min-version needs --tls-cert and --tls-key too' });
  });
});

describe('failed handshakes', () => {
  test('are logged at warn on each port with the address and the reason, one line for a burst', async (t) => {
    const lines: Record<string, any>[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    const tls = serverTls(certificates.clientCa.cert);
    const served = await startTestServer({ models: writeSimpleModel, http: { tls }, server: { logger } });
    t.after(() => served.close());
    const grpcFront = createGrpcFrontEnd(served.server, { tls });
    t.after(() => grpcFront.close());
    const metricsListener = createMetricsListener(new PrometheusMetrics({ processMetrics: false }).attach(served.server), { tls, logger });
    t.after(() => metricsListener.close());
    const [grpcPort, metricsPort] = [await grpcFront.listen('127.0.0.1', 0), await metricsListener.listen('127.0.0.1', 0)];
    const failures = (listener: string) => lines.filter((line) => line.msg.startsWith('TLS handshake failed') && line.listener === listener);

    // Clients without a certificate: the server refuses them, so it knows why.
    for (let attempt = 0; attempt < 3; attempt++) await refusal(fetch(`${served.url}/v2/health/ready`, { dispatcher: httpsAgent() }));
    await refusal(fetch(`https://localhost:${metricsPort}/metrics`, { dispatcher: httpsAgent() }));
    const anonymous = grpcClient(grpcPort);
    t.after(() => anonymous.close());
    assert.equal((await grpcCall(anonymous, 'ServerLive', {})).error?.code, grpc.status.UNAVAILABLE);

    const [http] = failures('HTTP');
    assert.equal(failures('HTTP').length, 1, 'a burst of failures is one line');
    assert.equal(http.level, 40);
    assert.equal(http.remoteAddress, '127.0.0.1');
    assert.equal(http.reason, 'peer did not return a certificate (ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE)');
    assert.equal(http.msg, `TLS handshake failed from 127.0.0.1 on the HTTP port: ${http.reason}`);
    assert.deepEqual(
      ['metrics', 'gRPC'].map((listener) => failures(listener).map((line) => [line.remoteAddress, line.reason])),
      [[['127.0.0.1', http.reason]], [['127.0.0.1', http.reason]]],
    );
  });
});

describe('reading the certificate files at start', () => {
  const paths = () => ({ cert: certificates.server.certPath, key: certificates.server.keyPath });

  test('no files means no TLS; good files give their contents', async () => {
    assert.equal(await readTlsFiles({}), undefined);
    const credentials = await readTlsFiles({ ...paths(), clientCa: certificates.clientCa.certPath });
    assert.deepEqual(credentials, { cert: certificates.server.cert, key: certificates.server.key, clientCa: certificates.clientCa.cert });
  });

  test('a missing, unreadable or mismatched file is named with its flag and what is wrong', async () => {
    const missing = join(certificates.dir, 'nowhere.pem');
    await assert.rejects(readTlsFiles({ ...paths(), cert: missing }), { message: `--tls-cert ${missing}: cannot read it (no such file)` });
    await assert.rejects(readTlsFiles({ ...paths(), key: certificates.dir }), { message: `--tls-key ${certificates.dir}: cannot read it (a folder, not a file)` });
    await assert.rejects(readTlsFiles({ ...paths(), key: certificates.client.keyPath }), (error: Error) => {
      assert.match(error.message, new RegExp(`^--tls-key ${certificates.client.keyPath} is not the private key of the certificate in --tls-cert ${certificates.server.certPath}`));
      return true;
    });
    await assert.rejects(readTlsFiles({ ...paths(), cert: certificates.server.keyPath }), /^Error: --tls-cert .*server\.key does not hold a PEM certificate/);
    const notPem = join(certificates.dir, 'not-pem.txt');
    await writeFile(notPem, 'hello\n');
    await assert.rejects(readTlsFiles({ ...paths(), key: notPem }), /--tls-key .*not-pem\.txt does not hold an unencrypted PEM private key/);
    await assert.rejects(readTlsFiles({ ...paths(), clientCa: notPem }), /--tls-client-ca .*not-pem\.txt does not hold a PEM CA certificate/);
  });

  test('a certificate needs its key, and mutual TLS needs both', async () => {
    await assert.rejects(readTlsFiles({ cert: certificates.server.certPath }), { message: '--tls-cert and --tls-key go together: --tls-key is missing' });
    await assert.rejects(readTlsFiles({ key: certificates.server.keyPath }), { message: '--tls-cert and --tls-key go together: --tls-cert is missing' });
    await assert.rejects(readTlsFiles({ clientCa: certificates.clientCa.certPath }), { message: '--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key too' });
  });

  test('a library user passing mismatched PEM contents gets the option named', () => {
    assert.throws(() => createGrpcFrontEnd({} as never, { tls: { cert: certificates.server.cert, key: certificates.client.key } }), /tls\.key is not the private key of the certificate in tls\.cert/);
  });
});

// ---------------------------------------------------------------------------------------------
// The command line, end to end.

const cli = (args: string[]) => runCli(args);

describe('nereid serve --tls-* and nereid classify --tls-ca', () => {
  let served: TestServer;
  let running: ServedChild | undefined;
  let grpcPort: number;
  let imagePath: string;

  before(async () => {
    // Only the repository folder is used: the CLI serves it in its own process.
    served = await startTestServer({
      models: async (repo) => {
        await writeSimpleModel(repo);
        const config = 'max_batch_size: 2\ninput:\n  - name: image\n    data_type: TYPE_FP32\n    dims: [1, 28, 28]\n    preprocess:\n      image: {color: grayscale}\n';
        await writeModel(repo, 'digits', 1, smallCnnModel(), undefined, { 'config.yaml': config });
      },
    });
    imagePath = join(certificates.dir, 'digit.png');
    await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toFile(imagePath);
    grpcPort = await freePort();
    running = await serveChild(served.repoDir, [
      '--grpc-port', String(grpcPort), '--metrics-port', '0',
      '--tls-cert', certificates.server.certPath, '--tls-key', certificates.server.keyPath, '--tls-client-ca', certificates.clientCa.certPath,
    ]);
  });

  after(async () => {
    if (running) await stopChild(running);
    await served?.close();
  });

  test('every port of the served process speaks mutual TLS', async () => {
    assert.match(running!.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(running!.metricsUrl ?? '',  /^https:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.equal((await fetch(`${running!.url}/v2/health/ready`, { dispatcher: httpsAgent(certificates.client) })).status, 200);
    await refusal(fetch(`${running!.url}/v2/health/ready`, { dispatcher: httpsAgent() }));
    assert.equal((await fetch(running!.metricsUrl!, { dispatcher: httpsAgent(certificates.client) })).status, 200);
    await refusal(fetch(running!.metricsUrl!, { dispatcher: httpsAgent() }));
    const client = grpcClient(grpcPort, certificates.client);
    try {
      assert.deepEqual((await grpcCall(client, 'ServerReady', {})).response, { ready: true });
    } finally {
      client.close();
    }
  });

  test('no port of the served process agrees to a TLS 1.2 suite with a SHA-1 MAC; the GCM ones and TLS 1.3 are served', async () => {
    const { connect } = await import('node:tls');
    const handshake = (port: number, options: { ciphers?: string; maxVersion?: 'TLSv1.2' | 'TLSv1.3' }) =>
      new Promise<string>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, ca: certificates.serverCa.cert, cert: certificates.client.cert, key: certificates.client.key, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'], ...options });
        socket.once('secureConnect', () => {
          resolve(`${socket.getProtocol()} ${socket.getCipher().name}`);
          socket.destroy();
        });
        socket.once('error', (error) => resolve(`refused: ${error.message}`));
      });
    const sha1Suites = 'ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA';
    for (const port of [Number(new URL(running!.url).port), grpcPort]) {
      assert.match(await handshake(port, { ciphers: sha1Suites, maxVersion: 'TLSv1.2' }), /^refused/, `port ${port}`);
      assert.match(await handshake(port, { ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' }), /^TLSv1\.2 ECDHE-(ECDSA|RSA)-AES128-GCM-SHA256$/, `port ${port}`);
      assert.match(await handshake(port, {}), /^TLSv1\.3 TLS_/, `port ${port}`);
    }
  });

  test('a bad certificate file stops `serve` at start with the flag and file named', async () => {
    const missing = join(certificates.dir, 'absent.pem');
    const result = await cli(['serve', '--model-repository', served.repoDir, '--tls-cert', missing, '--tls-key', certificates.server.keyPath]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim(), `nereid: --tls-cert ${missing}: cannot read it (no such file)`);
  });

  test('classify and detect --url reach a server with mutual TLS and a token (--tls-cert, --tls-key, --token or NEREID_HTTP_AUTH_TOKEN)', async () => {
    const guarded = await startTestServer({ repoDir: served.repoDir, http: { tls: serverTls(certificates.clientCa.cert), authTokens: ['cli-token'] } });
    const connection = ['--url', guarded.url, '--tls-ca', certificates.serverCa.certPath, '--tls-cert', certificates.client.certPath, '--tls-key', certificates.client.keyPath];
    try {
      const classified = await cli(['classify', '--model', 'digits', ...connection, '--token', 'cli-token', imagePath]);
      assert.equal(classified.code, 0, classified.stderr + classified.stdout);
      assert.ok((JSON.parse(classified.stdout.trim()) as { predictions: unknown[] }).predictions.length > 0);
      process.env.NEREID_HTTP_AUTH_TOKEN = 'cli-token\n';
      try {
        const fromEnvironment = await cli(['classify', '--model', 'digits', ...connection, imagePath]);
        assert.equal(fromEnvironment.code, 0, fromEnvironment.stderr + fromEnvironment.stdout);
      } finally {
        delete process.env.NEREID_HTTP_AUTH_TOKEN;
      }
      const noToken = await cli(['classify', '--model', 'digits', ...connection, imagePath]);
      assert.equal(noToken.code, 1);
      assert.match(noToken.stdout, /401 missing or invalid bearer token/);
      const noCertificate = await cli(['classify', '--model', 'digits', '--url', guarded.url, '--tls-ca', certificates.serverCa.certPath, '--token', 'cli-token', imagePath]);
      assert.equal(noCertificate.code, 1);
      assert.match(noCertificate.stderr, /certificate|socket|closed|reset/i);
      const halfPair = await cli(['detect', ...connection.slice(0, 6), '--token', 'cli-token', imagePath]);
      assert.equal(halfPair.code, 1);
      assert.match(halfPair.stderr, /--tls-cert and --tls-key go together: --tls-key is missing/);
    } finally {
      await guarded.close();
    }
  });

  test('classify --url https:// trusts the server through --tls-ca (and not without it)', async () => {
    // The served process wants client certificates, so classify talks to a TLS server without them.
    const oneWay = await startTestServer({ repoDir: served.repoDir, http: { tls: serverTls() } });
    try {
      const trusted = await cli(['classify', '--model', 'digits', '--url', oneWay.url, '--tls-ca', certificates.serverCa.certPath, imagePath]);
      assert.equal(trusted.code, 0, trusted.stderr);
      const line = JSON.parse(trusted.stdout.trim()) as { file: string; predictions: unknown[] };
      assert.equal(line.file, imagePath);
      assert.ok(line.predictions.length > 0);
      const untrusted = await cli(['classify', '--model', 'digits', '--url', oneWay.url, imagePath]);
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.stderr, /certificate/);
    } finally {
      await oneWay.close();
    }
  });
});
