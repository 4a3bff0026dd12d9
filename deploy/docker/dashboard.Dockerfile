# syntax=docker/dockerfile:1
# The dashboard: the built Vue frontend behind the same load balancer as `make run` (deploy/nginx/locations.conf,
# rendered at start by deploy/nginx/render.sh from the replica addresses in the environment).
#   docker build -f deploy/docker/dashboard.Dockerfile -t codegraph/dashboard .
# Runs as the unprivileged nginx user on :8080. Environment: GRAPH_API_ADDRS, WS_GATEWAY_ADDRS (host:port lists),
# LISTEN (default 8080). The build context is the repository root.

ARG NODE_VERSION=22

FROM node:${NODE_VERSION}-bookworm-slim AS frontend
WORKDIR /frontend
COPY frontend/ ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund && npm run build

FROM nginx:1.28-alpine AS runtime
COPY deploy/nginx/locations.conf deploy/nginx/http.conf deploy/nginx/render.sh /etc/codegraph/nginx/
COPY deploy/docker/dashboard-entrypoint.sh /usr/local/bin/codegraph-dashboard
COPY --from=frontend /frontend/dist /usr/share/codegraph/dashboard
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
