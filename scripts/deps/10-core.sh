# Core: Redis for every service and test, nginx as the load balancer.
apt_need redis-server redis-server
apt_need nginx-light nginx
# nginx's stream module: the TLS-terminating proxy of the Bolt-over-TLS tests (bolt+s:// in front of FalkorDB).
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || apt_need libnginx-mod-stream
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup" >&2; exit 1; }
