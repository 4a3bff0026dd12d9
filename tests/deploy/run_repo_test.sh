#!/usr/bin/env bash
# shellcheck disable=SC2317 # the helpers below are called through expect and eventually
# `make run REPO=<dir>` serves that folder: the real graph-api, ws-gateway and analysis-worker from target/debug
# (built by `cargo build --workspace --bins`, as make test does; the make target's own release build is skipped
# with `make -o build`) on free ports in a temp run dir, against a temporary folder that is not this repository.
# Checks: the folder is its own project named after it, it is analysed, it is watched by the worker (state
# watching), a saved edit, a new file and a deletion reach the graph through graph-api within a deadline, and
# PROJECT= names the project, and `stack.sh restart` keeps both. Takes a few seconds.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
bins=${STACK_BIN_DIR:-$repo/target/debug}
tmp=$(mktemp -d)
failed=0

. "$repo/tests/deploy/lib.sh"

for svc in graph-api ws-gateway analysis-worker; do
  [ -x "$bins/$svc" ] || { echo "run_repo_test: $bins/$svc is missing: cargo build --workspace --bins first" >&2; exit 2; }
done
mkdir -p "$tmp/bin"
# Only the services this needs: the stack skips a stream-consumer that is not built.
for svc in graph-api ws-gateway analysis-worker; do ln -s "$bins/$svc" "$tmp/bin/$svc"; done

read -r p_api p_gw p_aw p_lb p_redis p_sc <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()')"
export STACK_RUN_DIR=$tmp/run STACK_BIN_DIR=$tmp/bin STACK_GRAPH_API_PORT=$p_api STACK_WS_GATEWAY_PORTS=$p_gw \
  STACK_ANALYSIS_WORKER_PORT=$p_aw STACK_DASHBOARD_PORT=$p_lb STACK_REDIS_PORT=$p_redis STACK_STREAM_CONSUMER_PORT=$p_sc \
  STACK_FRONTEND=off STACK_FALKORDB=off STACK_READY_TIMEOUT=30 STACK_STOP_TIMEOUT=10
unset CODEGRAPH__ANALYSIS__ALLOWED_ROOTS STACK_ANALYZE STACK_ANALYZE_PATH STACK_PROJECT STACK_WATCH

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  bash "$repo/scripts/stack.sh" stop >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

folder=$tmp/my-app
mkdir -p "$folder/lib"
printf 'def helper(x):\n    return x\n' >"$folder/lib/util.py"
printf 'from lib.util import helper\n\ndef main():\n    helper(1)\n' >"$folder/app.py"

api=http://127.0.0.1:$p_api/api/graph
# wait_for DESCRIPTION URL PYTHON-CONDITION-ON-j: polls graph-api until the condition holds (20 s at most).
wait_for() {
  local deadline=$((SECONDS + 20))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -s "$2" | python3 -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if ($3) else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "       last answer of $2: $(curl -s "$2")"
  return 1
}
has_node() { # has_node PROJECT ID: 200 from GET /nodes/ID
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$api/nodes/${2//\//%2F}?project=$1")" = 200 ]
}
eventually() { # eventually COMMAND...: true once COMMAND is (20 s at most)
  local deadline=$((SECONDS + 20))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
lacks_node() { ! has_node "$@"; }

out=$(cd "$repo" && make -s -o build run REPO="$folder" 2>&1)
rc=$?
expect "make run REPO=<dir> exits 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || printf '       %s\n' "$out"
expect "it says it watches the folder as project my-app" grep -qF "watching $folder as project my-app" <<<"$out"
expect "it prints the dashboard URL of that project" grep -qF "dashboard: http://127.0.0.1:$p_lb/?project=my-app" <<<"$out"
roots() { tr '\0' '\n' <"/proc/$(cat "$tmp/run/pids/analysis-worker.pid")/environ" | grep '^CODEGRAPH__ANALYSIS__ALLOWED_ROOTS='; }
expect "the worker may read the folder and this repository" [ "$(roots)" = "CODEGRAPH__ANALYSIS__ALLOWED_ROOTS=$folder,$repo" ]
expect "the folder is analysed as its own project" eventually has_node my-app "py:lib/util.py:helper"
expect "the folder is watched by a worker" \
  wait_for watching "$api/admin/watch?project=my-app" "j['state'] == 'watching' and j['path'] == '$folder' and j['holder']"

printf 'def assist(x):\n    return x\n' >"$folder/lib/util.py.swp" && mv "$folder/lib/util.py.swp" "$folder/lib/util.py"
expect "a saved edit reaches the graph" eventually has_node my-app "py:lib/util.py:assist"
expect "what the edit removed leaves it" eventually lacks_node my-app "py:lib/util.py:helper"
printf 'def fresh():\n    pass\n' >"$folder/new.py"
expect "a new file reaches the graph" eventually has_node my-app "py:new.py:fresh"
rm "$folder/new.py"
expect "a deleted file leaves the graph" eventually lacks_node my-app "py:new.py:fresh"
expect "the watch status names the last change" \
  wait_for change "$api/admin/watch?project=my-app" "'new.py' in j['last_change_files']"
expect "this repository is not watched as well" \
  wait_for unwatched "$api/admin/watch?project=default" "j['watching'] is False"

bash "$repo/scripts/stack.sh" stop >/dev/null 2>&1
out=$(cd "$repo" && make -s -o build run REPO="$folder" PROJECT=named 2>&1)
expect "PROJECT= names the project" grep -qF "watching $folder as project named" <<<"$out"
expect "the folder is analysed under that name" eventually has_node named "py:lib/util.py:assist"
out=$(bash "$repo/scripts/stack.sh" restart 2>&1)
expect "a restart watches the same folder as the same project" grep -qF "watching $folder as project named" <<<"$out"

exit "$failed"
