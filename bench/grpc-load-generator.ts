/**
 * The closed-loop load generator over gRPC: the same loop as the HTTP one (runClosedLoop: one request
 * in flight per virtual client, warm-up excluded, hrtime latencies, failures counted), calling KServe
 * V2 `inference.GRPCInferenceService/ModelInfer` with @grpc/grpc-js.
 *
 * Channels: the virtual clients share `channels` grpc-js channels (default 1), client i on channel
 * i mod channels. One channel is one HTTP/2 connection carrying every client's calls as concurrent
 * streams, which is how gRPC clients are normally used (tritonclient.grpc, a grpc-js Client per
 * target); the HTTP generator instead gives each virtual client its own keep-alive connection, as
 * HTTP/1.1 needs for concurrency. Each channel gets its own subchannel pool
 * ('grpc.use_local_subchannel_pool'), since grpc-js otherwise shares one connection between
 * channels to the same address.
 *
 * The request message is serialised once (the proto-loader serialiser, Nereid's PROTO_LOADER_OPTIONS)
 * and sent as those bytes every time, as the HTTP generator sends one prebuilt body; answers are kept
 * as bytes and decoded only when they are verified, as the HTTP generator only drains unverified
 * bodies. So the client spends on each call what grpc-js's transport costs, not protobuf encoding.
 */
import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto } from '../src/frontends/grpc/v2-grpc-proto.js';
import { runClosedLoop, type LoadResult, type LoopSpec, type Outcome } from './load-generator.js';
import type { GrpcInferResponse, GrpcResponseCheck } from './workload.js';

const { Client } = loadInferenceProto();
const MODEL_INFER = Client.service.ModelInfer;

export interface GrpcLoadSpec extends LoopSpec {
  /** host:port of the gRPC listener. */
  target: string;
  /** ModelInfer request message (plain object, as @grpc/proto-loader takes it). */
  request: Record<string, unknown>;
  /** grpc-js channels the virtual clients share. */
  channels: number;
  check: GrpcResponseCheck;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc.use_local_subchannel_pool': 1,
};

/** The request as bytes on the wire, serialised once. */
export function serialiseModelInfer(request: Record<string, unknown>): Buffer {
  return MODEL_INFER.requestSerialize(request);
}

export function decodeModelInferResponse(bytes: Buffer): GrpcInferResponse {
  return MODEL_INFER.responseDeserialize(bytes) as GrpcInferResponse;
}

function waitForReady(client: grpc.Client, ms: number): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + ms, (error) => (error ? reject(error) : resolve())));
}

/** One ModelInfer call with the prebuilt bytes; resolves to the answer's bytes. */
export function callModelInfer(client: grpc.Client, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      MODEL_INFER.path,
      (message) => message,
      (answer) => answer,
      bytes,
      (error, answer) => (error ? reject(error) : resolve(answer!)),
    );
  });
}

export function openChannel(target: string): grpc.Client {
  return new grpc.Client(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export async function runGrpcLoad(spec: GrpcLoadSpec): Promise<LoadResult> {
  const bytes = serialiseModelInfer(spec.request);
  const channels = Array.from({ length: Math.max(1, Math.min(spec.channels, spec.concurrency)) }, () => openChannel(spec.target));
  try {
    await Promise.all(channels.map((channel) => waitForReady(channel, 10_000)));
    const send = async (client: number, verify: boolean): Promise<Outcome> => {
      let answer: Buffer;
      try {
        answer = await callModelInfer(channels[client % channels.length], bytes);
      } catch (error) {
        const status = error as grpc.ServiceError;
        return { ok: false, bytes: 0, problem: `gRPC ${grpc.status[status.code] ?? status.code}: ${status.details ?? status.message}` };
      }
      if (!verify) return { ok: true, bytes: answer.length };
      let failure: string | undefined;
      try {
        failure = spec.check(decodeModelInferResponse(answer));
      } catch (error) {
        failure = `ModelInferResponse does not decode: ${(error as Error).message}`;
      }
      return { ok: true, bytes: answer.length, verification: { failure } };
    };
    return await runClosedLoop(spec, send);
  } finally {
    for (const channel of channels) channel.close();
  }
}
