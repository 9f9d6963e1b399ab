/**
 * The standard gRPC health service (`grpc.health.v1.Health`), so that load balancers and Kubernetes'
 * grpc probes can ask Nereid what they ask any gRPC server. SERVING means the server is ready (the
 * answer of ServerReady); the whole server ('') and the inference service are the services known.
 * Like ServerLive and ServerReady, it asks for no token: probes carry none.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { quoteName } from '../../core/errors.js';
import { PROTO_DIR, PROTO_LOADER_OPTIONS, SERVICE_NAME } from './v2-grpc-proto.js';

export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthCheckRequest {
  service: string;
}

/** Loads the health service's definition (its own small .proto beside the inference ones). */
export function loadHealthProto(): { definition: protoLoader.PackageDefinition; Client: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(join(PROTO_DIR, 'health.proto'), PROTO_LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  return { definition, Client: root.grpc.health.v1.Health };
}

export interface HealthService {
  /** Ends every Watch stream (NOT_SERVING first), so that a graceful shutdown need not wait for them. */
  close(): void;
}

/**
 * Adds the health service to a grpc-js server. `ready` is read on each Check, and by each Watch every
 * `watchIntervalMs` (the server has no readiness events), which sends a status only when it changed.
 */
export function addHealthService(grpcServer: grpc.Server, ready: () => boolean, watchIntervalMs = 500): HealthService {
  const statusOf = (service: string): ServingStatus =>
    service !== '' && service !== SERVICE_NAME && service !== HEALTH_SERVICE_NAME ? 'SERVICE_UNKNOWN' : ready() ? 'SERVING' : 'NOT_SERVING';
  /** Each open Watch and the status it last sent. */
  const watches = new Map<grpc.ServerWritableStream<HealthCheckRequest, unknown>, { sent?: ServingStatus }>();
  grpcServer.addService(loadHealthProto().Client.service, {
    Check(call: grpc.ServerUnaryCall<HealthCheckRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
      const status = statusOf(call.request.service);
      // The protocol's answer for a service the server does not know is NOT_FOUND, not a status.
      if (status === 'SERVICE_UNKNOWN') {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${quoteName(call.request.service)} (known: '', '${SERVICE_NAME}')` });
        return;
      }
      callback(null, { status });
    },
    Watch(call: grpc.ServerWritableStream<HealthCheckRequest, unknown>) {
      const watch: { sent?: ServingStatus } = {};
      const send = () => {
        const status = statusOf(call.request.service);
        if (status === watch.sent) return;
        watch.sent = status;
        call.write({ status });
      };
      const timer = setInterval(send, watchIntervalMs);
      timer.unref();
      const stop = () => {
        clearInterval(timer);
        watches.delete(call);
      };
      watches.set(call, watch);
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
      send();
    },
  });
  return {
    close() {
      // A watcher learns the server stops serving before its stream ends.
      for (const [call, watch] of watches) {
        if (watch.sent === 'SERVING') call.write({ status: 'NOT_SERVING' });
        call.end();
        watches.delete(call);
      }
    },
  };
}
