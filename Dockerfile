# Nereid's container image: `docker build -t nereid .` then
#   docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v "$PWD/models:/models:ro" --stop-timeout 35 nereid
# See docs/deploy.md. Nothing is downloaded when the container runs: the ONNX Runtime CPU binaries ship inside the
# onnxruntime-node package and the example models are copied in at build time.

# --- build: dev dependencies, TypeScript compile, bundled models ---
FROM node:20-bookworm-slim AS build
WORKDIR /app
# onnxruntime-node's install script would otherwise fetch CUDA binaries the CPU image never loads (.npmrc already skips
# every dependency install script; this says so for that one even if .npmrc changes).
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
COPY dashboard ./dashboard
COPY scripts ./scripts
COPY models ./models
RUN npm run build \
 && node scripts/prepare-models.mjs \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies only, non-root ---
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# The application files stay owned by root: the server's user can read them, not change them.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/proto ./proto
# The web dashboard's pages (on by default; --dashboard false turns it off).
COPY --from=build /app/dashboard ./dashboard
# The example repository fills a new volume on first use; mount your own over it (read-only is enough to serve).
COPY --from=build --chown=1000:1000 /app/models /models
# Numeric, so that Kubernetes' runAsNonRoot can verify it (the image's "node" user has this id).
USER 1000:1000
VOLUME ["/models"]
# HTTP (KServe V2), gRPC, Prometheus metrics.
EXPOSE 8000 8001 8002
# Node is PID 1 on purpose: `nereid serve` handles SIGTERM itself (readiness off, drain, exit within --shutdown-timeout)
# and starts no child processes to reap, so no init is needed. Give `docker stop` longer than the drain (--stop-timeout).
STOPSIGNAL SIGTERM
# Ready, not merely live: a container is healthy once its models are loaded. Plain HTTP on 8000; set
# NEREID_HEALTHCHECK_URL when serving TLS or another port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.NEREID_HEALTHCHECK_URL || 'http://127.0.0.1:8000/v2/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve", "--model-repository", "/models", "--host", "0.0.0.0"]
