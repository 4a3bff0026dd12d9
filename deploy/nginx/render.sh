#!/bin/sh
# Writes a complete, standalone nginx.conf for the dashboard's load balancer: the upstreams of graph-api and of
# the ws-gateway replicas, a server that includes deploy/nginx/locations.conf (the one routing file), and every
# path nginx writes to (pid, temp dirs, logs) inside a run dir, so an unprivileged test can run it.
# Used by scripts/stack.sh (make run), the Rust ws-gateway tests, the browser e2e tests and the dashboard image.
# POSIX sh, so it also runs in the nginx alpine image.
#
# Usage:
#   deploy/nginx/render.sh --run-dir DIR [options]
#
#   --run-dir DIR          required; created if missing. nginx.conf, nginx.pid, error.log, access.log and
#                          tmp/ go there.
#   --listen ADDR          listen address (default 127.0.0.1:8080). A bare port listens on all interfaces.
#   --root DIR             static root, the built dashboard (default DIR/www, created empty).
#   --graph-api LIST       graph-api replicas, host:port separated by commas or spaces (default 127.0.0.1:8000).
#                          An empty list is allowed: /api/ then answers 502.
#   --ws-gateway LIST      ws-gateway replicas, same format (default 127.0.0.1:8001). Empty: /ws/ answers 502.
#   --daemon-off           write `daemon off;` so nginx stays in the foreground (for a supervisor or a test).
#   --workers N            worker_processes (default 1; `auto` in containers).
#   --error-log PATH       default DIR/error.log (`/dev/stderr` in containers).
#   --access-log PATH|off  default DIR/access.log (`/dev/stdout` in containers), in the `codegraph` format of
#                          http.conf: no query string is ever logged (`?token=`).
#   --fail-timeout SECS    how long a replica that failed is skipped (default 5).
#   --user USER            worker user when nginx starts as root. Default: whoever runs render.sh, so a run dir
#                          in a private temp dir stays readable and writable to the workers (tests run as root).
#                          Not written when render.sh runs unprivileged (nginx would ignore it).
#   --out FILE             where to write the config (default DIR/nginx.conf).
#
# Prints the path of the written config. Start nginx with it (the -e keeps nginx away from its built-in
# /var/log/nginx before it has read the config, which an unprivileged user cannot open):
#   nginx -p DIR -c DIR/nginx.conf -e DIR/error.log
# Check it with `nginx -t -p DIR -c DIR/nginx.conf -e DIR/error.log`; stop it with `kill -QUIT $(cat DIR/nginx.pid)`.
#
# Example (three gateways behind one balancer, in the foreground):
#   deploy/nginx/render.sh --run-dir /tmp/lb --listen 127.0.0.1:18080 \
#       --graph-api 127.0.0.1:18000 --ws-gateway 127.0.0.1:18001,127.0.0.1:18011,127.0.0.1:18021 --daemon-off
#   nginx -p /tmp/lb -c /tmp/lb/nginx.conf -e /tmp/lb/error.log
set -eu

here=$(cd "$(dirname "$0")" && pwd)

usage() {
    sed -n '/^# Usage:/,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "render.sh: $*" >&2
    exit 2
}

run_dir=
listen=127.0.0.1:8080
root=
graph_api=127.0.0.1:8000
ws_gateway=127.0.0.1:8001
daemon=on
workers=1
error_log=
access_log=
fail_timeout=5
user=
if [ "$(id -u)" = 0 ]; then user=$(id -un); fi
out=

while [ $# -gt 0 ]; do
    case $1 in
        --run-dir) run_dir=${2?}; shift 2 ;;
        --listen) listen=${2?}; shift 2 ;;
        --root) root=${2?}; shift 2 ;;
        --graph-api) graph_api=${2?}; shift 2 ;;
        --ws-gateway) ws_gateway=${2?}; shift 2 ;;
        --daemon-off) daemon=off; shift ;;
        --workers) workers=${2?}; shift 2 ;;
        --error-log) error_log=${2?}; shift 2 ;;
        --access-log) access_log=${2?}; shift 2 ;;
        --fail-timeout) fail_timeout=${2?}; shift 2 ;;
        --user) user=${2?}; shift 2 ;;
        --out) out=${2?}; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ -n "$run_dir" ] || die "--run-dir is required (see --help)"
mkdir -p "$run_dir/tmp"
run_dir=$(cd "$run_dir" && pwd)
[ -n "$root" ] || { root=$run_dir/www; mkdir -p "$root"; }
[ -d "$root" ] || die "static root '$root' is not a directory"
root=$(cd "$root" && pwd)
: "${error_log:=$run_dir/error.log}"
: "${access_log:=$run_dir/access.log}"
: "${out:=$run_dir/nginx.conf}"

# Everything below lands in nginx syntax: refuse what could end a directive or open a block.
for value in "$listen" "$run_dir" "$root" "$graph_api" "$ws_gateway" "$workers" "$error_log" "$access_log" \
    "$fail_timeout" "$user"; do
    case $value in *[\;\{\}\"\'\$\\]*) die "refusing '$value': it contains nginx syntax" ;; esac
done
case $fail_timeout in ''|*[!0-9]*) die "--fail-timeout takes whole seconds" ;; esac

# upstream_block NAME LIST: one `server` line per replica, or a placeholder that answers 502 when LIST is empty.
upstream_block() {
    name=$1
    list=$(printf '%s' "$2" | tr ',' ' ')
    echo "    upstream $name {"
    count=0
    for addr in $list; do
        case $addr in
            *:[0-9]*) ;;
            *) die "'$addr' is not host:port" ;;
        esac
        echo "        server $addr max_fails=1 fail_timeout=${fail_timeout}s;"
        count=$((count + 1))
    done
    if [ "$count" = 0 ]; then
        echo "        # no replica given: every request answers 502"
        echo "        server 127.0.0.1:9 down;"
    fi
    if [ "$name" = graph_api ]; then
        echo "        keepalive 16;"
    fi
    echo "    }"
}

mime_types() {
    if [ -r /etc/nginx/mime.types ]; then
        echo "    include /etc/nginx/mime.types;"
    else
        cat <<'EOF'
    types {
        text/html html;
        text/css css;
        application/javascript js mjs;
        application/json json map;
        image/svg+xml svg;
        image/png png;
        image/x-icon ico;
        font/woff2 woff2;
        application/wasm wasm;
    }
EOF
    fi
}

# The `codegraph` format (http.conf) logs no query string, so no `?token=` lands in the log.
access_directive() {
    if [ "$access_log" = off ]; then
        echo "    access_log off;"
    else
        echo "    access_log $access_log codegraph;"
    fi
}

tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
{
    cat <<EOF
# Written by deploy/nginx/render.sh; do not edit, render again.
daemon $daemon;
worker_processes $workers;
EOF
    if [ -n "$user" ]; then
        echo "user $user;"
    fi
    cat <<EOF
pid $run_dir/nginx.pid;
error_log $error_log notice;

events {
    worker_connections 4096;
}

http {
EOF
    mime_types
    cat <<EOF
    default_type application/octet-stream;
    include $here/http.conf;
EOF
    access_directive
    cat <<EOF
    client_body_temp_path $run_dir/tmp/client_body;
    proxy_temp_path $run_dir/tmp/proxy;
    fastcgi_temp_path $run_dir/tmp/fastcgi;
    uwsgi_temp_path $run_dir/tmp/uwsgi;
    scgi_temp_path $run_dir/tmp/scgi;

EOF
    upstream_block graph_api "$graph_api"
    echo
    upstream_block ws_gateway "$ws_gateway"
    cat <<EOF

    server {
        listen $listen;
        server_name _;
        root $root;
        include $here/locations.conf;
    }
}
EOF
} >"$tmp"
mv "$tmp" "$out"
echo "$out"
