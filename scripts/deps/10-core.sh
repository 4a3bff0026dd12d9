# Core: Redis for every service and test, nginx as the load balancer.
apt_need redis-server redis-server
apt_need nginx-light nginx
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup" >&2; exit 1; }
