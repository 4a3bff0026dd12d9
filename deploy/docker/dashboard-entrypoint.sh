#!/bin/sh
# Entry point of the dashboard image: renders nginx.conf from the environment with deploy/nginx/render.sh,
# then runs the command given, or by default nginx in the foreground on that config.
# Environment: GRAPH_API_ADDRS, WS_GATEWAY_ADDRS (host:port lists, comma or space separated), LISTEN,
# RUN_DIR (where nginx.conf and its temp files go), CODEGRAPH_NGINX_DIR (where render.sh is),
# DASHBOARD_ROOT (the built frontend).
set -eu
run_dir=${RUN_DIR:-/tmp/nginx}
sh "${CODEGRAPH_NGINX_DIR:-/etc/codegraph/nginx}/render.sh" \
    --run-dir "$run_dir" \
    --listen "${LISTEN:-8080}" \
    --root "${DASHBOARD_ROOT:-/usr/share/codegraph/dashboard}" \
    --graph-api "${GRAPH_API_ADDRS:-graph-api:8000}" \
    --ws-gateway "${WS_GATEWAY_ADDRS:-ws-gateway:8001}" \
    --workers auto \
    --error-log /dev/stderr \
    --access-log /dev/stdout \
    --daemon-off >/dev/null
[ $# -gt 0 ] || set -- nginx -p "$run_dir" -c "$run_dir/nginx.conf" -e /dev/stderr
exec "$@"
