# The dashboard: the built Vue frontend behind the same load balancer as `make run` (deploy/nginx/locations.conf,
# rendered at start by deploy/nginx/render.sh from the replica addresses in the environment).
#   DOCKER_BUILDKIT=1 docker build -f deploy/docker/dashboard.Dockerfile -t codegraph/dashboard .
# Runs as the unprivileged `nginx` user on :8080. Environment: GRAPH_API_ADDRS, WS_GATEWAY_ADDRS (host:port
# lists), LISTEN (default 8080). The build context is the repository root.
# NODE_IMAGE, NGINX_IMAGE: the official images by default. A machine without a registry passes a local nginx
# image (deploy/docker/nginx-debian.Dockerfile: Debian's nginx with the same `nginx` user and a `wget`
# for the health check) and FRONTEND_FROM=host: the frontend that build-images.sh built on the
# host (Debian's node is older than vite needs) and staged in target/docker/dashboard.
# Needs BuildKit (Docker >= 20.10), like service.Dockerfile.

ARG NODE_VERSION=22
ARG NODE_IMAGE=node:${NODE_VERSION}-bookworm-slim
ARG NGINX_IMAGE=nginx:1.28-alpine
ARG FRONTEND_FROM=frontend

FROM ${NODE_IMAGE} AS frontend
WORKDIR /frontend
COPY frontend/ ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund && npm run build

# The frontend built on the host (`npm run build`, copied by build-images.sh).
FROM scratch AS host
COPY target/docker/dashboard /frontend/dist

FROM ${FRONTEND_FROM} AS built

FROM ${NGINX_IMAGE} AS runtime
COPY deploy/nginx/locations.conf deploy/nginx/http.conf deploy/nginx/render.sh /etc/codegraph/nginx/
COPY deploy/docker/dashboard-entrypoint.sh /usr/local/bin/codegraph-dashboard
COPY --from=built /frontend/dist /usr/share/codegraph/dashboard
ENV GRAPH_API_ADDRS=graph-api:8000 \
    WS_GATEWAY_ADDRS=ws-gateway:8001 \
    LISTEN=8080 \
    RUN_DIR=/tmp/nginx
USER nginx
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${LISTEN##*:}/health" || exit 1
# nginx's graceful stop: finish in-flight requests, close the WebSockets (the gateways' drain does the rest).
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/local/bin/codegraph-dashboard"]
