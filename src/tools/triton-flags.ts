/**
 * tritonserver's flags that Nereid's serve does not take, and what to write instead: a command line carried over from a
 * Triton deployment is told the equivalent rather than only "unknown option".
 */
export const TRITON_SERVE_FLAGS: Readonly<Record<string, string>> = {
  '--exit-timeout-secs': '--shutdown-timeout (seconds, the same meaning)',
  '--allow-grpc': '--grpc-port 0 to turn gRPC off (it is on by default)',
  '--allow-http': 'nothing: HTTP is always served (--http-port picks the port)',
  '--grpc-use-ssl': '--tls-cert and --tls-key, which secure every port',
  '--grpc-server-cert': '--tls-cert',
  '--grpc-server-key': '--tls-key',
  '--grpc-root-cert': '--tls-client-ca',
  '--grpc-use-mutual-auth': '--tls-client-ca, which asks every port for a client certificate',
  '--http-address': '--host (one address for every port)',
  '--grpc-address': '--host (one address for every port)',
  '--metrics-address': '--host (one address for every port)',
  '--backend-config': "nothing: ONNX Runtime's settings go in each model's config parameters; leave it out",
  '--response-cache-byte-size': "--cache-config local,size=BYTES, Triton's newer spelling of the same",
  '--log-info': 'nothing: info lines are logged unless POST /v2/logging switches them off, as in Triton; leave it out',
  '--log-warning': 'nothing: warnings are logged unless POST /v2/logging switches them off, as in Triton; leave it out',
  '--log-error': 'nothing: errors are logged unless POST /v2/logging switches them off, as in Triton; leave it out',
  '--trace-config': '--trace-exporter, --trace-endpoint and --trace-rate',
  '--http-restricted-api': 'token scopes (--inference-auth-token, --management-auth-token; docs/security.md)',
  '--grpc-restricted-protocol': 'token scopes (--inference-auth-token, --management-auth-token; docs/security.md)',
  '--strict-model-config': 'nothing: configs are always completed from the model file; leave it out',
  '--disable-auto-complete-config': 'nothing: configs are always completed from the model file; leave it out',
  '--backend-directory': 'nothing: the backends are built in; leave it out',
  '--http-thread-count': 'nothing: one event loop serves HTTP; leave it out',
  '--model-load-thread-count': "nothing: models load side by side (each model's loads one after another); leave it out",
  '--rate-limit': 'nothing: there is no rate limiter; leave it out',
};
