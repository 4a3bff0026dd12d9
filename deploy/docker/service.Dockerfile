# syntax=docker/dockerfile:1
# The image of every Rust service: one Dockerfile, the service named by build arguments, because the four
# images differ only in the binary and its port (a fix made here reaches all of them).
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=graph-api --build-arg PORT=8000 \
#       -t codegraph/graph-api .
# SERVICE: graph-api | ws-gateway | stream-consumer | analysis-worker (package and binary of services/<SERVICE>).
# PORT: its default port (8000 | 8001 | 8002 | 8003). The build context is the repository root.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=<service> is required" >&2; exit 1; }
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY services services
# Cache mounts keep the registry and incremental artifacts between builds; the binary leaves the cache via /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p "${SERVICE}" --bin "${SERVICE}" \
    && install -D "target/release/${SERVICE}" "/out/${SERVICE}"

FROM debian:bookworm-slim AS runtime
ARG SERVICE
ARG PORT
RUN test -n "${PORT}" || { echo "--build-arg PORT=<port> is required" >&2; exit 1; }
# curl is for HEALTHCHECK only; ca-certificates for TLS to managed Redis and OTLP endpoints.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin codegraph
COPY --from=builder /out/${SERVICE} /usr/local/bin/codegraph-service
ENV CODEGRAPH_SERVICE=${SERVICE} \
    CODEGRAPH__HTTP__ADDR=0.0.0.0:${PORT} \
    CODEGRAPH__REDIS__URL=redis://redis:6379 \
    CODEGRAPH__TELEMETRY__LOG_FORMAT=json
USER 10001:10001
EXPOSE ${PORT}
# Liveness follows the configured address, so overriding CODEGRAPH__HTTP__ADDR keeps the check right.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${CODEGRAPH__HTTP__ADDR##*:}/health" || exit 1
# SIGTERM starts the service's own drain (ws-gateway closes its sockets with 1012); give it time to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/codegraph-service"]
