/**
 * The Helm chart (deploy/helm/nereid) and the KServe manifests (deploy/kserve): every object the chart renders, under
 * the default values and with every option on, is checked against the Kubernetes OpenAPI schemas (kubernetes-models
 * validates with them); the Prometheus Operator and KServe objects against zod schemas of the fields they use, whose
 * containers are again Kubernetes Containers. The server arguments the chart and the runtime produce are run for real
 * by `nereid serve`. A broken values override must fail, so the validation is shown to bite. The systemd unit of
 * docs/deploy.md is checked by `systemd-analyze verify` (where installed) and its ExecStart run for real too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Container, Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { parseCacheConfig } from '../src/cache/cache-config.js';
import { scaleModel, writeModel } from '../src/onnx/test-models.js';
import { freePort, serveChild, stopChild } from './support/cli-server.js';
import { renderChart, type RenderedManifest } from './support/helm-template.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHART = join(ROOT, 'deploy/helm/nereid');

/** A Kubernetes Container, checked by its OpenAPI schema inside a zod schema. */
const container = z.unknown().superRefine((value, context) => {
  try {
    new Container(value as ConstructorParameters<typeof Container>[0]).validate();
  } catch (error) {
    context.addIssue({ code: 'custom', message: `not a valid Container: ${(error as Error).message}` });
  }
});
const metadata = z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/), labels: z.record(z.string(), z.string()).optional() });

/** monitoring.coreos.com/v1 ServiceMonitor, the fields the chart sets. */
const serviceMonitorSchema = z.strictObject({
  apiVersion: z.literal('monitoring.coreos.com/v1'),
  kind: z.literal('ServiceMonitor'),
  metadata,
  spec: z.strictObject({
    selector: z.strictObject({ matchLabels: z.record(z.string(), z.string()) }),
    endpoints: z.array(
      z.strictObject({
        port: z.string(),
        path: z.string().startsWith('/'),
        interval: z.string().regex(/^\d+(ms|s|m|h)$/),
        scheme: z.enum(['http', 'https']).optional(),
        tlsConfig: z.strictObject({ serverName: z.string(), ca: z.strictObject({ secret: z.strictObject({ name: z.string(), key: z.string() }) }) }).optional(),
        authorization: z.strictObject({ type: z.literal('Bearer'), credentials: z.strictObject({ name: z.string(), key: z.string() }) }).optional(),
      }),
    ),
  }),
});

/** serving.kserve.io/v1alpha1 (Cluster)ServingRuntime, the fields deploy/kserve uses. */
const servingRuntimeSchema = z.strictObject({
  apiVersion: z.literal('serving.kserve.io/v1alpha1'),
  kind: z.enum(['ClusterServingRuntime', 'ServingRuntime']),
  metadata,
  spec: z.strictObject({
    annotations: z.record(z.string(), z.string()).optional(),
    supportedModelFormats: z.array(z.strictObject({ name: z.string(), version: z.string().optional(), autoSelect: z.boolean().optional(), priority: z.int().min(1).optional() })).min(1),
    protocolVersions: z.array(z.enum(['v1', 'v2', 'grpc-v1', 'grpc-v2'])).min(1),
    containers: z.array(container).min(1),
    volumes: z.array(z.strictObject({ name: z.string(), emptyDir: z.strictObject({}) })).optional(),
  }),
});

/** serving.kserve.io/v1beta1 InferenceService with a predictor model, the fields the example uses. */
const inferenceServiceSchema = z.strictObject({
  apiVersion: z.literal('serving.kserve.io/v1beta1'),
  kind: z.literal('InferenceService'),
  metadata,
  spec: z.strictObject({
    predictor: z.strictObject({
      minReplicas: z.int().min(0).optional(),
      maxReplicas: z.int().min(1).optional(),
      model: z.strictObject({
        modelFormat: z.strictObject({ name: z.string(), version: z.string().optional() }),
        runtime: z.string().optional(),
        protocolVersion: z.enum(['v1', 'v2', 'grpc-v2']).optional(),
        storageUri: z.string().regex(/^(s3|gs|https?|pvc|oci|hdfs|webhdfs):\/\//),
        resources: z.record(z.string(), z.record(z.string(), z.string())).optional(),
      }),
    }),
  }),
});

/** Throws, naming the object, unless it is valid for its apiVersion and kind. */
function validateManifest(object: Record<string, unknown>): void {
  const name = `${object.kind} ${(object.metadata as { name?: string } | undefined)?.name}`;
  const zodChecked = (schema: z.ZodType) => {
    const result = schema.safeParse(object);
    if (!result.success) throw new Error(`${name}: ${z.prettifyError(result.error)}`);
  };
  const key = `${object.apiVersion}/${object.kind}`;
  try {
    switch (key) {
      case 'apps/v1/Deployment':
        return new Deployment(object as ConstructorParameters<typeof Deployment>[0]).validate();
      case 'v1/Service':
        return new Service(object as ConstructorParameters<typeof Service>[0]).validate();
      case 'autoscaling/v2/HorizontalPodAutoscaler':
        return new HorizontalPodAutoscaler(object as ConstructorParameters<typeof HorizontalPodAutoscaler>[0]).validate();
      case 'policy/v1/PodDisruptionBudget':
        return new PodDisruptionBudget(object as ConstructorParameters<typeof PodDisruptionBudget>[0]).validate();
    }
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`);
  }
  if (key === 'monitoring.coreos.com/v1/ServiceMonitor') return zodChecked(serviceMonitorSchema);
  if (key === 'serving.kserve.io/v1alpha1/ClusterServingRuntime' || key === 'serving.kserve.io/v1alpha1/ServingRuntime') return zodChecked(servingRuntimeSchema);
  if (key === 'serving.kserve.io/v1beta1/InferenceService') return zodChecked(inferenceServiceSchema);
  throw new Error(`${name}: no schema for ${key}`);
}

function renderValid(values: Record<string, unknown> = {}): RenderedManifest[] {
  const manifests = renderChart(CHART, { values, releaseName: 'demo', namespace: 'serving' });
  for (const { object } of manifests) validateManifest(object);
  return manifests;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function only(manifests: RenderedManifest[], kind: string, name = 'demo-nereid'): Json {
  const found = manifests.filter(({ object }) => object.kind === kind && (object.metadata as Json).name === name);
  assert.equal(found.length, 1, `one ${kind} ${name} among ${manifests.map(({ object }) => `${object.kind} ${(object.metadata as Json).name}`).join(', ')}`);
  return found[0]!.object;
}

const serverContainer = (deployment: Json): Json => deployment.spec.template.spec.containers.find((c: Json) => c.name === 'nereid');

/** Flag values of `--flag=value` arguments. */
function flagValue(args: string[], flag: string): string | undefined {
  return args.find((arg) => arg.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

const EVERYTHING_ON = {
  autoscaling: { enabled: true, podsMetric: { name: 'nereid_inference_queued', averageValue: '4' } },
  serviceMonitor: { enabled: true, labels: { release: 'prometheus' } },
  cache: { type: 'redis', redis: { passwordSecret: 'redis-auth', prefix: 'nereid:' } },
  redis: { deploy: true },
  auth: { existingSecret: 'nereid-tokens' },
  tls: { existingSecret: 'nereid-tls' },
  modelRepository: { source: 'pvc', pvc: { claimName: 'models', subPath: 'repository' } },
  server: { accessLog: true, extraArgs: ['--max-queue-size', '256'] },
  env: [{ name: 'UV_THREADPOOL_SIZE', value: '8' }],
  podAnnotations: { 'example.com/team': 'vision' },
  nodeSelector: { 'kubernetes.io/arch': 'amd64' },
};

test('default values: a Deployment, a Service and a PodDisruptionBudget, each valid against the Kubernetes schemas', () => {
  const manifests = renderValid();
  assert.deepEqual(manifests.map(({ object }) => object.kind).sort(), ['Deployment', 'PodDisruptionBudget', 'Service']);
});

test('the Deployment probes readiness and liveness, drains within its grace period, and runs non-root on a read-only root with /tmp writable', () => {
  const deployment = only(renderValid({ server: { shutdownTimeoutSeconds: 45, preStopSleepSeconds: 10 } }), 'Deployment');
  const pod = deployment.spec.template.spec;
  const server = serverContainer(deployment);
  assert.equal(server.readinessProbe.httpGet.path, '/v2/health/ready');
  assert.equal(server.livenessProbe.httpGet.path, '/v2/health/live');
  assert.equal(server.startupProbe.httpGet.path, '/v2/health/live');
  assert.equal(flagValue(server.args, '--shutdown-timeout'), '45');
  assert.deepEqual(server.lifecycle.preStop.exec.command, ['sleep', '10']);
  assert.equal(pod.terminationGracePeriodSeconds, 10 + 45 + 5, 'preStop, then the whole drain, then a margin before SIGKILL');
  assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.equal(server.securityContext.readOnlyRootFilesystem, true);
  assert.equal(server.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(server.securityContext.capabilities.drop, ['ALL']);
  const tmp = server.volumeMounts.find((mount: Json) => mount.mountPath === '/tmp');
  assert.ok(pod.volumes.find((volume: Json) => volume.name === tmp.name).emptyDir, '/tmp is an emptyDir');
  assert.ok(server.resources.requests.cpu && server.resources.limits.memory);
  assert.equal(pod.automountServiceAccountToken, false);
});

/** A probe's timing as Kubernetes applies it, its defaults filled in (timeoutSeconds 1, periodSeconds 10, failureThreshold 3). */
function probeTiming(probe: Json): { timeoutSeconds: number; periodSeconds: number; failureThreshold: number } {
  return { timeoutSeconds: probe.timeoutSeconds ?? 1, periodSeconds: probe.periodSeconds ?? 10, failureThreshold: probe.failureThreshold ?? 3 };
}

/**
 * The probes are answered on the event loop that writes answers and finishes loads, which a busy server holds for about
 * a second: each probe waits longer than that for an answer, readiness drops a pod only after several misses, and
 * liveness restarts one only after a long silence.
 */
function assertProbesTolerateABusyServer(server: Json): void {
  const [startup, readiness, liveness] = [server.startupProbe, server.readinessProbe, server.livenessProbe].map(probeTiming);
  for (const [name, probe] of Object.entries({ startup, readiness, liveness })) {
    assert.ok(probe.timeoutSeconds >= 3, `${name} probe: timeoutSeconds ${probe.timeoutSeconds} (Kubernetes' default is 1 s)`);
    assert.ok(probe.timeoutSeconds < probe.periodSeconds, `${name} probe: an answer is waited for within its period`);
  }
  assert.ok(readiness.failureThreshold >= 3, 'one or two slow answers do not take a busy pod out of the Service');
  assert.ok(liveness.periodSeconds * liveness.failureThreshold >= 30, 'a restart only after 30 s without an answer in time');
  assert.ok(startup.periodSeconds * startup.failureThreshold >= 300, 'five minutes to start answering');
}

test('the probes wait 3 s or more for an answer and tolerate a few slow ones, over HTTP and TCP alike (KServe\'s runtime too); a value overrides one field', () => {
  assertProbesTolerateABusyServer(serverContainer(only(renderValid(), 'Deployment')));
  const mutualTls = serverContainer(only(renderValid({ tls: { existingSecret: 'nereid-tls', requireClientCertificate: true } }), 'Deployment'));
  assert.deepEqual(mutualTls.livenessProbe.tcpSocket, { port: 'http' });
  assertProbesTolerateABusyServer(mutualTls);
  const tuned = serverContainer(only(renderValid({ probes: { liveness: { timeoutSeconds: 8, initialDelaySeconds: 2 } } }), 'Deployment'));
  assert.deepEqual(
    { ...tuned.livenessProbe, httpGet: undefined },
    { httpGet: undefined, periodSeconds: 10, timeoutSeconds: 8, failureThreshold: 3, initialDelaySeconds: 2 },
  );
});

test('the Service exposes http, grpc and metrics on the container ports of the same names, and selects only the server pods', () => {
  const manifests = renderValid({ redis: { deploy: true }, cache: { type: 'redis' } });
  const service = only(manifests, 'Service');
  const deployment = only(manifests, 'Deployment');
  const containerPorts = new Map(serverContainer(deployment).ports.map((port: Json) => [port.name, port.containerPort]));
  assert.deepEqual(
    service.spec.ports.map((port: Json) => [port.name, port.port, containerPorts.get(port.targetPort)]),
    [
      ['http', 8000, 8000],
      ['grpc', 8001, 8001],
      ['metrics', 8002, 8002],
    ],
  );
  assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
  const redisPods = only(manifests, 'Deployment', 'demo-nereid-redis').spec.template.metadata.labels;
  assert.ok(Object.entries(service.spec.selector).some(([label, value]) => redisPods[label] !== value), "the server Service does not select the cache's pods");
});

test('every option on: HPA on CPU and a Prometheus-adapter pods metric, ServiceMonitor, Redis cache, tokens and TLS from Secrets, models from a PVC — all valid', () => {
  const manifests = renderValid(EVERYTHING_ON);
  assert.deepEqual(manifests.map(({ object }) => `${object.kind} ${(object.metadata as Json).name}`).sort(), [
    'Deployment demo-nereid',
    'Deployment demo-nereid-redis',
    'HorizontalPodAutoscaler demo-nereid',
    'PodDisruptionBudget demo-nereid',
    'Service demo-nereid',
    'Service demo-nereid-redis',
    'ServiceMonitor demo-nereid',
  ]);
  const deployment = only(manifests, 'Deployment');
  assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count');
  const hpa = only(manifests, 'HorizontalPodAutoscaler');
  assert.deepEqual(
    hpa.spec.metrics.map((metric: Json) => metric.type),
    ['Resource', 'Pods'],
  );
  assert.equal(hpa.spec.metrics[1].pods.metric.name, 'nereid_inference_queued');
  const server = serverContainer(deployment);
  // The cache flag parses with the server's own parser, and points at the chart's Redis Service.
  assert.deepEqual(parseCacheConfig(flagValue(server.args, '--cache-config')!), { kind: 'redis', host: 'demo-nereid-redis', port: 6379, prefix: 'nereid:' });
  // Tokens and the Redis password arrive as the environment variables the CLI reads.
  const cliSource = readFileSync(join(ROOT, 'src/cli/auth-tokens.ts'), 'utf8') + readFileSync(join(ROOT, 'src/cache/cache-config.ts'), 'utf8');
  const fromSecrets = server.env.filter((variable: Json) => variable.valueFrom?.secretKeyRef);
  assert.deepEqual(
    fromSecrets.map((variable: Json) => variable.name),
    ['NEREID_HTTP_AUTH_TOKEN', 'NEREID_INFERENCE_AUTH_TOKEN', 'NEREID_MANAGEMENT_AUTH_TOKEN', 'NEREID_METRICS_AUTH_TOKEN', 'NEREID_REDIS_PASSWORD'],
  );
  for (const variable of fromSecrets) assert.ok(cliSource.includes(variable.name), `${variable.name} is read by the server`);
  // The token keys are optional in the Secret; a Secret that yields none must stop the start, not leave it open.
  assert.deepEqual(server.env.find((variable: Json) => variable.name === 'NEREID_REQUIRE_AUTH'), { name: 'NEREID_REQUIRE_AUTH', value: 'true' });
  assert.ok(cliSource.includes('NEREID_REQUIRE_AUTH'));
  assert.ok(!JSON.stringify(deployment).includes('password='), 'no secret on the command line');
  // TLS from the Secret: flags, mount and HTTPS probes.
  assert.equal(flagValue(server.args, '--tls-cert'), '/etc/nereid/tls/tls.crt');
  assert.equal(deployment.spec.template.spec.volumes.find((volume: Json) => volume.name === 'tls').secret.secretName, 'nereid-tls');
  assert.equal(server.readinessProbe.httpGet.scheme, 'HTTPS');
  const models = server.volumeMounts.find((mount: Json) => mount.mountPath === '/models');
  assert.deepEqual(models, { name: 'models', mountPath: '/models', readOnly: true, subPath: 'repository' });
  const monitor = only(manifests, 'ServiceMonitor');
  assert.equal(monitor.spec.endpoints[0].port, 'metrics');
  assert.equal(monitor.spec.endpoints[0].authorization.credentials.key, 'metrics-token');
});

test('models from an init container fill an emptyDir mounted read-only by the server; mutual TLS turns the probes to TCP', () => {
  const manifests = renderValid({
    modelRepository: { source: 'initContainer', initContainer: { image: 'amazon/aws-cli:2.17.0', args: ['s3', 'sync', 's3://bucket/models', '/models'] } },
    tls: { existingSecret: 'nereid-tls', requireClientCertificate: true },
  });
  const pod = only(manifests, 'Deployment').spec.template.spec;
  assert.deepEqual(pod.initContainers[0].args, ['s3', 'sync', 's3://bucket/models', '/models']);
  assert.ok(pod.initContainers[0].volumeMounts.some((mount: Json) => mount.name === 'models' && mount.mountPath === '/models' && !mount.readOnly));
  assert.ok(pod.volumes.find((volume: Json) => volume.name === 'models').emptyDir);
  const server = pod.containers[0];
  assert.equal(flagValue(server.args, '--tls-client-ca'), '/etc/nereid/tls/ca.crt');
  assert.deepEqual(server.readinessProbe.tcpSocket, { port: 'http' });
});

test('a broken override fails: a schema violation, a missing required value, an unknown choice', () => {
  assert.throws(() => renderValid({ server: { httpPort: 'http' } }), /Deployment demo-nereid: .*containerPort must be integer/);
  assert.throws(() => renderValid({ resources: { requests: { cpu: ['1'] } } }), /Deployment demo-nereid: .*resources\/requests\/cpu/);
  assert.throws(() => renderValid({ autoscaling: { enabled: true, minReplicas: 'two' } }), /HorizontalPodAutoscaler demo-nereid: .*minReplicas must be integer/);
  assert.throws(() => renderValid({ serviceMonitor: { enabled: true, interval: 'often' } }), /ServiceMonitor demo-nereid: [\s\S]*interval/);
  assert.throws(() => renderValid({ modelRepository: { source: 'pvc' } }), /modelRepository.pvc.claimName is required/);
  assert.throws(() => renderValid({ cache: { type: 'memcached' } }), /cache.type must be none, local or redis, not memcached/);
  assert.throws(() => renderValid({ cache: { type: 'redis' } }), /cache.type redis needs cache.redis.host, or redis.deploy true/);
});

const KSERVE = ['servingruntime.yaml', 'inferenceservice.yaml'].flatMap((file) =>
  parseAllDocuments(readFileSync(join(ROOT, 'deploy/kserve', file), 'utf8'), { version: '1.1' }).map((document) => document.toJS() as Json),
);

test('KServe: the ServingRuntime serves onnx over v2 on the ports KServe expects from /mnt/models, and the example InferenceService uses it', () => {
  for (const object of KSERVE) validateManifest(object);
  const runtime = KSERVE.find((object) => object.kind === 'ClusterServingRuntime')!;
  const service = KSERVE.find((object) => object.kind === 'InferenceService')!;
  assert.ok(runtime.spec.supportedModelFormats.some((format: Json) => format.name === 'onnx'));
  assert.ok(runtime.spec.protocolVersions.includes('v2'));
  const [kserveContainer] = runtime.spec.containers;
  assert.equal(kserveContainer.name, 'kserve-container', "KServe merges the predictor's settings into the container of this name");
  assert.equal(flagValue(kserveContainer.args, '--model-repository'), '/mnt/models', "the storage initializer's download folder");
  assert.equal(flagValue(kserveContainer.args, '--http-port'), '8080', 'the port KServe routes REST to');
  assert.equal(flagValue(kserveContainer.args, '--grpc-port'), '9000');
  assert.equal(flagValue(kserveContainer.args, '--host'), '0.0.0.0');
  assert.equal(kserveContainer.readinessProbe.httpGet.path, '/v2/health/ready');
  const readiness = probeTiming(kserveContainer.readinessProbe);
  assert.ok(readiness.timeoutSeconds >= 3 && readiness.failureThreshold >= 3, `a busy server stays ready: ${JSON.stringify(readiness)}`);
  assert.equal(runtime.spec.annotations['prometheus.kserve.io/port'], flagValue(kserveContainer.args, '--metrics-port'));
  assert.equal(service.spec.predictor.model.runtime, runtime.metadata.name);
  assert.equal(service.spec.predictor.model.modelFormat.name, 'onnx');
  assert.equal(service.spec.predictor.model.protocolVersion, 'v2');
});

test('KServe: a runtime with a bad container or protocol, or an InferenceService with unknown fields, fails', () => {
  const runtime = KSERVE.find((object) => object.kind === 'ClusterServingRuntime')!;
  const service = KSERVE.find((object) => object.kind === 'InferenceService')!;
  const badPort = structuredClone(runtime);
  badPort.spec.containers[0].ports = [{ containerPort: '8080' }];
  assert.throws(() => validateManifest(badPort), /not a valid Container: .*containerPort must be integer/);
  const badProtocol = structuredClone(runtime);
  badProtocol.spec.protocolVersions = ['v3'];
  assert.throws(() => validateManifest(badProtocol), /protocolVersions/);
  const typo = structuredClone(service);
  typo.spec.predictor.model.storageURI = typo.spec.predictor.model.storageUri;
  assert.throws(() => validateManifest(typo), /storageURI/);
});

let repo: string;
before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'nereid-manifests-'));
  await writeModel(repo, 'scale', 1, scaleModel(2), 'max_batch_size: 8\n');
});
after(() => rm(repo, { recursive: true, force: true }));

/** The container's arguments, run by `nereid serve` on loopback with this test's repository and free ports. */
async function serveWithArgs(args: string[], repositoryFolder: string): Promise<void> {
  assert.equal(args[0], 'serve');
  const ports = new Map<string, string>();
  for (const flag of ['--http-port', '--grpc-port', '--metrics-port']) ports.set(flag, String(await freePort()));
  const local = args.slice(1).map((arg) => {
    const [flag] = arg.split('=', 1) as [string];
    if (ports.has(flag)) return `${flag}=${ports.get(flag)}`;
    if (flag === '--host') return '--host=127.0.0.1';
    if (flag === '--model-repository') {
      assert.equal(arg, `--model-repository=${repositoryFolder}`);
      return `--model-repository=${repo}`;
    }
    return arg;
  });
  const served = await serveChild(repo, local);
  try {
    const ready = await fetch(`${served.url}/v2/models/scale/ready`);
    assert.equal(ready.status, 200);
  } finally {
    assert.equal(await stopChild(served), 0);
  }
}

test("the chart's and the runtime's server arguments start a real `nereid serve`", async () => {
  const chartArgs: string[] = serverContainer(only(renderValid({ cache: { type: 'local' }, server: { accessLog: true } }), 'Deployment')).args;
  assert.equal(flagValue(chartArgs, '--cache-config'), 'local,size=268435456', 'a large number printed in full (int64), not as 2.68435456e+08');
  await serveWithArgs(chartArgs, '/models');
  const runtime = KSERVE.find((object) => object.kind === 'ClusterServingRuntime')!;
  await serveWithArgs(runtime.spec.containers[0].args, '/mnt/models');
});

test("docs/deploy.md's systemd unit is valid, waits longer than the drain and its ExecStart starts a real `nereid serve`", async () => {
  const doc = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
  const unit = /```ini\n(\[Unit\][\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(unit, 'deploy.md shows a unit file');
  const setting = (key: string): string => {
    const value = new RegExp(`^${key}=(.*)$`, 'm').exec(unit!)?.[1];
    assert.ok(value !== undefined, `the unit sets ${key}`);
    return value!;
  };
  for (const key of ['User', 'WorkingDirectory', 'Restart', 'EnvironmentFile']) setting(key);
  assert.equal(setting('KillSignal'), 'SIGTERM');
  const [node, cli, ...args] = setting('ExecStart').split(/\s+/) as [string, string, ...string[]];
  assert.ok(node.startsWith('/') && cli === `${setting('WorkingDirectory')}/dist/cli.js`, 'absolute paths, the CLI of the built clone');
  const pairs = args.slice(1).flatMap((arg, index, all) => (arg.startsWith('--') ? [`${arg}=${all[index + 1]}`] : []));
  const shutdownTimeout = Number(pairs.find((pair) => pair.startsWith('--shutdown-timeout='))?.split('=')[1] ?? 30);
  assert.ok(Number(setting('TimeoutStopSec')) > shutdownTimeout, 'systemd waits for the drain before SIGKILL');
  if (existsSync('/usr/bin/systemd-analyze')) {
    const dir = await mkdtemp(join(tmpdir(), 'nereid-unit-'));
    try {
      await writeFile(join(dir, 'nereid.service'), unit!);
      const verified = await new Promise<{ error: Error | null; stderr: string }>((resolve) =>
        execFile('/usr/bin/systemd-analyze', ['verify', join(dir, 'nereid.service')], { timeout: 60_000 }, (error, _stdout, stderr) => resolve({ error, stderr })),
      );
      assert.equal(verified.error, null, verified.stderr);
      assert.equal(verified.stderr.trim(), '', 'no setting systemd would ignore');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  await serveWithArgs([args[0]!, ...pairs], '/srv/nereid/models');
});
