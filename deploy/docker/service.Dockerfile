# The image of every Rust service: one Dockerfile, the service named by build arguments, because the four
# images differ only in the binary and its port (a fix made here reaches all of them).
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/service.Dockerfile \
#       --build-arg SERVICE=graph-api --build-arg PORT=8000 -t codegraph/graph-api .
# SERVICE: graph-api | ws-gateway | stream-consumer | analysis-worker (package and binary of services/<SERVICE>).
# PORT: its default port (8000 | 8001 | 8002 | 8003). The build context is the repository root.
# BUILDER_IMAGE, BASE_IMAGE: the official images by default; a machine without a registry passes local ones
# (make images: deploy/docker/build-images.sh).
# BINARY_FROM: `builder` (default) compiles in the builder stage; `host` takes the stripped release binary that
# build-images.sh put in target/docker/bin/ (for machines whose Debian rustc is older than the workspace's).
# Needs BuildKit (Docker >= 20.10; the cache mounts and the stage chosen by an argument): there is no remote
# `# syntax=` line, so an engine without a registry builds it with its built-in Dockerfile frontend.

ARG RUST_VERSION=1.95
ARG BUILDER_IMAGE=rust:${RUST_VERSION}-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
ARG BINARY_FROM=builder

FROM ${BUILDER_IMAGE} AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=<service> is required" >&2; exit 1; }
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY services services
# Cache mounts keep the registry and incremental artifacts between builds; the binary leaves the cache via /out.
# No debug info in the image (the workspace's release profile keeps line tables for `make run`'s backtraces).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked -p "${SERVICE}" --bin "${SERVICE}" \
    && install -D "target/release/${SERVICE}" "/out/${SERVICE}"

# The binary built on the host (release profile, debug info stripped by build-images.sh).
FROM scratch AS host
ARG SERVICE
COPY target/docker/bin/${SERVICE} /out/${SERVICE}

FROM ${BINARY_FROM} AS binary

FROM ${BASE_IMAGE} AS runtime
# curl is for HEALTHCHECK only; ca-certificates for TLS to managed Redis and OTLP endpoints. Before the
# service's arguments, so the four images share this layer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin codegraph
ARG SERVICE
ARG PORT
RUN test -n "${PORT}" || { echo "--build-arg PORT=<port> is required" >&2; exit 1; }
COPY --from=binary /out/${SERVICE} /usr/local/bin/codegraph-service
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
