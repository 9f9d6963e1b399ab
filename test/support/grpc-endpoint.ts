/**
 * The gRPC front end of a test server on an ephemeral loopback port, with a client of the project's
 * own .proto loaded as Triton's clients load it.
 */
import * as grpc from '@grpc/grpc-js';
import { createGrpcFrontEnd, type GrpcFrontEnd, type GrpcFrontEndOptions } from '../../src/frontends/grpc/v2-grpc.js';
import { loadInferenceProto } from '../../src/frontends/grpc/v2-grpc-proto.js';
import type { Server } from '../../src/server/server.js';

export interface GrpcEndpoint {
  front: GrpcFrontEnd;
  /** The loopback port it listens on. */
  port: number;
  /** Methods by RPC name, e.g. client.ModelInfer(request, metadata, callback). */
  client: grpc.Client & Record<string, any>;
  close(): Promise<void>;
}

export async function startGrpcEndpoint(server: Server, options: GrpcFrontEndOptions = {}): Promise<GrpcEndpoint> {
  const front = createGrpcFrontEnd(server, options);
  const port = await front.listen('127.0.0.1', 0);
  const { Client } = loadInferenceProto();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as GrpcEndpoint['client'];
  return {
    front,
    port,
    client,
    async close() {
      client.close();
      await front.close(1000);
    },
  };
}

/** A ModelStreamInfer stream whose answers are kept by request id; `done` settles when the server ends the stream. */
export function openInferStream(client: GrpcEndpoint['client']): { stream: grpc.ClientDuplexStream<any, any>; answers: Map<string, any>; done: Promise<void> } {
  const stream = client.ModelStreamInfer() as grpc.ClientDuplexStream<any, any>;
  const answers = new Map<string, any>();
  const done = new Promise<void>((resolve, reject) => {
    stream.on('data', (answer: { infer_response: { id: string } }) => answers.set(answer.infer_response.id, answer));
    stream.on('error', reject);
    stream.on('status', (status: grpc.StatusObject) => (status.code === grpc.status.OK ? resolve() : reject(new Error(status.details))));
  });
  return { stream, answers, done };
}
