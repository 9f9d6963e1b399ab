/**
 * The gRPC front end's options as a schema with their defaults, apart from the front end so that `nereid --help` shows
 * them without loading grpc-js.
 */
import { z } from 'zod';
import { authTokensSchema } from '../../core/auth.js';
import { flagNames, type SettingName } from '../../core/options.js';
import { tlsOptionSchema } from '../../core/tls.js';

/** Options of the gRPC front end; the defaults are Triton's, and the message limit matches HTTP's body limit. */
export const grpcFrontEndOptionsSchema = z.object({
  /** Largest request message accepted (grpc.max_receive_message_length); larger ones get RESOURCE_EXHAUSTED. */
  maxReceiveMessageBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** Largest response message sent (grpc.max_send_message_length); larger ones fail with RESOURCE_EXHAUSTED. */
  maxSendMessageBytes: z.number().int().positive().default(64 * 1024 * 1024),
  /** grpc.keepalive_time_ms: ping a connection after this long without activity (Triton: 2 hours). */
  keepaliveTimeMs: z.number().int().positive().default(7_200_000),
  /** grpc.keepalive_timeout_ms: close the connection when a ping is not answered within this (Triton: 20 s). */
  keepaliveTimeoutMs: z.number().int().positive().default(20_000),
  /** grpc.http2.min_ping_interval_without_data_ms (Triton: 5 minutes). Passed to grpc-js, which does not enforce it yet. */
  http2MinPingIntervalWithoutDataMs: z.number().int().nonnegative().default(300_000),
  /** grpc.keepalive_permit_without_calls (Triton: false). Passed to grpc-js, whose server does not enforce it yet. */
  keepalivePermitWithoutCalls: z.boolean().default(false),
  /**
   * Bearer tokens in the `authorization` metadata, as over HTTP: a list opens every RPC but ServerLive,
   * ServerReady and ModelReady; an object scopes them (`management`: the Repository* RPCs, TraceSetting and
   * LogSettings; `inference`: the rest).
   */
  authTokens: authTokensSchema,
  /** Serve gRPC reflection (list and describe the services) when the optional package @grpc/reflection is installed. */
  reflection: z.boolean().default(true),
  /**
   * Most requests one ModelStreamInfer stream holds at once: running, or answered and waiting for an earlier request's
   * answer to be written first. At the limit the stream reads no further request until its oldest one is answered, so a
   * slow request holds back at most this many answers.
   */
  streamMaxPendingAnswers: z.number().int().positive().default(64),
  /**
   * grpc.max_concurrent_streams: calls one connection may have open at once (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS);
   * grpc-js clients queue calls beyond it. Each open call may hold a whole message (maxReceiveMessageBytes) before its
   * handler runs, so this and maxConnections bound what a caller can make the server hold.
   */
  maxConcurrentStreams: z.number().int().positive().default(256),
  /** Connections the gRPC port keeps open at once; more are refused at connect (as --http-max-connections does). */
  maxConnections: z.number().int().positive().default(4096),
  /** One log line per call (and per streamed request): RPC, status, ms, request id, model (--log-access). */
  accessLog: z.boolean().default(false),
  /** Serve over TLS with this certificate and key; with `clientCa`, only clients holding a certificate it signed (--tls-*). */
  tls: tlsOptionSchema,
});

/** The gRPC front end's options named as `nereid serve`'s flags (option settingName): one flag sets both message limits. */
export const grpcFlagName: SettingName = flagNames('grpc-', {
  maxReceiveMessageBytes: '--grpc-max-message-bytes',
  maxSendMessageBytes: '--grpc-max-message-bytes',
  accessLog: '--log-access',
});
