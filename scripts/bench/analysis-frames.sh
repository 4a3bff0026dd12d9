#!/usr/bin/env bash
# Frames and bytes a browser receives for one fresh analysis (docs/BENCHMARKS.md, "Change sets").
#
#   scripts/bench/analysis-frames.sh <analysis-worker binary> <folder> [label]
#
# Starts a private redis-server, runs `<binary> analyze` of <folder> into a fresh project (timing it, with the
# worker's peak RSS and CPU time from /usr/bin/time, redis-server's CPU time (INFO cpu) and used_memory before and
# after, and the steps line of the worker's summary), then reads the project's CDC
# stream: an unfiltered WebSocket client receives exactly one frame per entry, the published text, which is
# the stored envelope with `"id":"<entry id>",` spliced in after its opening brace. Prints entries (frames),
# changes, job events and bytes, then Redis's time by command per graph change and its memory by kind of key.
# Works with any version of the binary (per-entity or change-set streams).
set -euo pipefail
bin=$1 dir=$(cd "$2" && pwd) label=${3:-$1}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$work"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
memory() { redis-cli -p "$port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
cpu() { redis-cli -p "$port" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.2f", s}'; }
before=$(memory) cpu_before=$(cpu)
start=$(date +%s.%N)
CODEGRAPH__REDIS__URL="redis://127.0.0.1:$port" CODEGRAPH__ANALYSIS__ALLOWED_ROOTS="$dir" \
  /usr/bin/time -f '%M %U %S' -o "$work/rss" "$bin" analyze --project frames --path "$dir" >"$work/out"
end=$(date +%s.%N)
after=$(memory) cpu_after=$(cpu)
grep '^  steps:' "$work/out" || true
read -r rss_kib worker_user worker_sys <"$work/rss"
python3 - "$port" "$label" "$start" "$end" "$rss_kib" "$before" "$after" "$worker_user" "$worker_sys" "$cpu_before" \
  "$cpu_after" <<'PY'
import json, socket, sys
port, label, start, end = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rss_kib, mem_before, mem_after = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
worker_cpu = float(sys.argv[8]) + float(sys.argv[9])
redis_cpu = float(sys.argv[11]) - float(sys.argv[10])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)]))
    return read()
def read():
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        data = f.read(n + 2)[:-2]
        return data
    if t == b":": return int(rest)
    if t == b"-": raise RuntimeError(rest.decode())
    return rest
entries = changes = jobs = nbytes = 0
last = "-"
while True:
    batch = cmd("XRANGE", "code_graph:{frames}:cdc", last, "+", "COUNT", "1000")
    if not batch: break
    for eid, fields in batch:
        body = dict(zip(fields[::2], fields[1::2]))[b"e"]
        entries += 1
        nbytes += len(body) + len(eid) + len(b'"id":"",')
        env = json.loads(body)
        if env["type"] == "change_set": changes += len(env["changes"])
        elif env["entity"]["kind"] == "job": jobs += 1
        else: changes += 1
    last = "(" + batch[-1][0].decode()
    if len(batch) < 1000: break
print(f"{label}: {entries} frames ({changes} graph changes, {jobs} job events), {nbytes} bytes, "
      f"{nbytes / max(entries, 1):.0f} bytes/frame; analyze {end - start:.2f} s, worker peak RSS "
      f"{rss_kib / 1024:.0f} MiB, Redis used_memory +{(mem_after - mem_before) / 2**20:.0f} MiB; CPU: worker "
      f"{worker_cpu:.1f} s, redis-server {redis_cpu:.1f} s")

# Redis's time by command (INFO commandstats, the Function's own calls included) per graph change, read before the
# scan below adds its own; then where its memory went, by kind of key (MEMORY USAGE of every key, pipelined).
def pipelined(commands):
    s.sendall(b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in c) for c in commands))
    return [read() for _ in commands]
stats = {}
for line in cmd("INFO", "commandstats").decode().splitlines():
    if line.startswith("cmdstat_"):
        name, fields = line[len("cmdstat_"):].split(":", 1)
        stats[name] = dict(f.split("=") for f in fields.split(","))
per = max(changes, 1)
print("  Redis time per graph change by command: " + ", ".join(
      f"{n} {float(v['usec']) / per:.2f} µs ({v['calls']} calls)"
      for n, v in sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"]))[:6]))
sizes, counts, cursor = {}, {}, b"0"
while True:
    cursor, keys = cmd("SCAN", cursor.decode(), "COUNT", "1000")
    for key, size in zip(keys, pipelined([[b"MEMORY", b"USAGE", k, b"SAMPLES", b"0"] for k in keys])):
        parts = key.decode().split(":")
        kind = parts[2] if len(parts) > 2 else key.decode()
        if kind.startswith("g") and kind[1:].isdigit() and len(parts) > 3:
            kind = parts[3]  # an adjacency set of a generation after a reset: in/out
        sizes[kind] = sizes.get(kind, 0) + (size or 0)
        counts[kind] = counts.get(kind, 0) + 1
    if cursor == b"0": break
print("  Redis memory by key: " + ", ".join(f"{k} {v / 1e6:.0f} MB ({counts[k]} keys)"
      for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v >= 1e6))
for what in ("nodes", "rels"):
    sample = cmd("HRANDFIELD", f"code_graph:{{frames}}:{what}", "500", "WITHVALUES") or []
    if sample:
        ids, values = sample[::2], sample[1::2]
        print(f"  {what}: ids {sum(map(len, ids)) / len(ids):.0f} bytes, JSON {sum(map(len, values)) / len(values):.0f} "
              f"bytes on average ({len(ids)} sampled)")
PY
