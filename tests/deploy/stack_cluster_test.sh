#!/usr/bin/env bash
# Runs `scripts/stack.sh start-cluster` (what `make run-cluster` does) for real, on free ports in a temp run dir, with
# tests/deploy/fake_service.py standing in for the four service binaries: 6 redis-server nodes form a cluster of 3
# primaries + 3 replicas that agree on every slot, every service gets CODEGRAPH__REDIS__CLUSTER_NODES (all 6 nodes)
# and no CODEGRAPH__REDIS__URL, status counts the nodes ready, a write through the cluster works, restart brings
# back a cluster, and stop ends every node.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
stack=$repo/scripts/stack.sh
tmp=$(mktemp -d)
failed=0

. "$repo/tests/deploy/lib.sh"

# Six consecutive ports (and their bus ports, +10000) below the ephemeral range, from a spot of this process's own.
cluster_base() {
  python3 -c '
import os, socket
def free(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
base = 12000 + (os.getpid() * 7) % 8000
while not all(free(p) and free(p + 10000) for p in range(base, base + 6)):
    base += 6
print(base)'
}

read -r p_api p_gw1 p_sc p_aw p_lb <<<"$(free_ports 5)"
base=$(cluster_base)
mkdir -p "$tmp/bin"
for svc in graph-api ws-gateway stream-consumer analysis-worker; do
  ln -s "$repo/tests/deploy/fake_service.py" "$tmp/bin/$svc"
done
export STACK_RUN_DIR=$tmp/run STACK_BIN_DIR=$tmp/bin STACK_GRAPH_API_PORT=$p_api STACK_WS_GATEWAY_PORTS=$p_gw1 \
  STACK_STREAM_CONSUMER_PORT=$p_sc STACK_ANALYSIS_WORKER_PORT=$p_aw STACK_DASHBOARD_PORT=$p_lb \
  STACK_REDIS_CLUSTER_PORT=$base STACK_REDIS_CLUSTER_NODE_TIMEOUT=1000 STACK_FRONTEND=off STACK_FALKORDB=off STACK_READY_TIMEOUT=30 STACK_STOP_TIMEOUT=10 \
  STACK_ANALYZE_PATH=$repo

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  bash "$stack" stop >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

nodes=""
for ((p = base; p < base + 6; p++)); do nodes+="${nodes:+,}redis://127.0.0.1:$p"; done

t0=$SECONDS
out=$(bash "$stack" start-cluster 2>&1)
rc=$?
echo "  ..   start-cluster took $((SECONDS - t0)) s" 
expect "start-cluster exits 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || printf '       %s\n' "$out"

# shellcheck disable=SC2317 # called through expect
three_by_three() {
  local nodes_out
  nodes_out=$(redis-cli -p "$base" cluster nodes) || return 1
  [ "$(awk '$3 ~ /master/' <<<"$nodes_out" | wc -l)" = 3 ] && [ "$(awk '$3 ~ /slave/' <<<"$nodes_out" | wc -l)" = 3 ] &&
    redis-cli --cluster check "127.0.0.1:$base" | grep -q 'All 16384 slots covered'
}
expect "3 primaries + 3 replicas cover every slot" three_by_three

status=$(bash "$stack" status)
expect "status exits 0 with every component ready" bash -c "bash '$stack' status >/dev/null"
expect "status lists 6 cluster nodes ready" [ "$(grep -cE '^  redis-[1-6] .*redis-cluster://.* ready$' <<<"$status")" = 6 ]

log=$tmp/run/logs
expect "graph-api got every node as CODEGRAPH__REDIS__CLUSTER_NODES" \
  grep -qF "\"CODEGRAPH__REDIS__CLUSTER_NODES\": \"$nodes\"" "$log/graph-api.log"
expect "no service got CODEGRAPH__REDIS__URL" bash -c "! grep -q CODEGRAPH__REDIS__URL '$log'/*.log"
expect "stack.env names the cluster" grep -qxF "STACK_REDIS_CLUSTER_NODES=$nodes" "$tmp/run/stack.env"
expect "a key written through the cluster reads back" \
  bash -c "redis-cli -c -p $base set '{stack-test}:k' v >/dev/null && [ \"\$(redis-cli -c -p $((base + 3)) get '{stack-test}:k')\" = v ]"

t0=$SECONDS
out=$(bash "$stack" restart 2>&1)
echo "  ..   restart took $((SECONDS - t0)) s"
expect "restart brings back a cluster" grep -q "Redis Cluster ready" <<<"$out"
expect "the restarted cluster starts empty" bash -c "[ -z \"\$(redis-cli -c -p $base get '{stack-test}:k')\" ]"

pids=$(cat "$tmp/run/pids/"*.pid)
bash "$stack" stop >/dev/null
expect "stop ends every recorded process, the 6 nodes too" bash -c "! kill -0 $(tr '\n' ' ' <<<"$pids") 2>/dev/null"
bash "$stack" status >/dev/null
expect "status exits 3 after stop" [ $? = 3 ]

exit "$failed"
