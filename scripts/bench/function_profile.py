#!/usr/bin/env python3
"""Where Redis spends its CPU inside `cg_mutate` (docs/BENCHMARKS.md, "Change sets").

    scripts/bench/function_profile.py [--calls 200] [--ops 1000] [--workload nodes|files] [--runs 3]
                                      [--without-versions]

Starts a private redis-server, loads shared/src/functions.lua twice over the runs — as it is, and a copy with
`TIME` probes between the Function's phases (prefetch, check, apply, flush, write) — and drives `cg_mutate` with
RESP straight from this script (no graph-api, no HTTP):

- `nodes`: `--calls` calls of `--ops` fresh node upserts each (the shape of graph-api-bench's `/batch` bodies);
- `files`: one call per generated source file (1 file node, 30 methods, 30 `contains` and 90 `calls`
  relationships, a third of them to earlier files), the shape of the analysis-worker's change sets.

Prints redis-server's CPU time per operation (from /proc, the unprobed library) and, from the probed one, the
wall time per operation of each phase. Standard library only.
"""
import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHASES = ("prefetch", "check", "apply", "flush", "write")


class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest


def probed(source):
    """The library with TIME probes between the phases of cg_mutate, summed into the hash `prof`."""
    clock = "local function clk() local t = redis.call('TIME') return tonumber(t[1]) + tonumber(t[2]) / 1e6 end\n"
    marker = "local LIBRARY_VERSION"
    assert marker in source
    source = source.replace(marker, clock + marker, 1)
    steps = [
        ("  local ctx = new_context(keys[1], argv[1], tonumber(argv[2]), argv[3], argv[4])\n  prefetch_ops(ctx, argv, 6, n)\n",
         "  local c0 = clk()\n  local ctx = new_context(keys[1], argv[1], tonumber(argv[2]), argv[3], argv[4])\n"
         "  prefetch_ops(ctx, argv, 6, n)\n  local c1 = clk()\n"),
        ("  check_ops(ctx, argv, 6, n)\n", "  check_ops(ctx, argv, 6, n)\n  local c2 = clk()\n"),
        ("  flush(ctx)\n  out[1]", "  local c3 = clk()\n  flush(ctx)\n  local c4 = clk()\n  out[1]"),
    ]
    for old, new in steps:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    tail = "  out[1] = write_change_set(ctx) or ''\n  return out\n"
    assert source.count(tail) == 1
    record = "".join(
        f"  redis.call('HINCRBYFLOAT', 'prof', '{name}', {b} - {a})\n"
        for name, a, b in zip(PHASES, ("c0", "c1", "c2", "c3", "c4"), ("c1", "c2", "c3", "c4", "c5"))
    )
    return source.replace(tail, "  out[1] = write_change_set(ctx) or ''\n  local c5 = clk()\n" + record + "  return out\n")


def without_versions(source):
    """An ablation, for measuring only (versions come out wrong): the library without the versions hash — not
    fetched, not written, every version 1."""
    steps = [
        ("  prefetch(ctx.versions, version_fields)\n", ""),
        ("  flush_hash(ctx.versions)\n  for key, fields", "  for key, fields"),
        ("  local v = tostring(tonumber(hget(ctx.versions, field) or 0) + 1)\n", "  local v = '1'\n"),
    ]
    for old, new in steps:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


def canonical(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def node_calls(calls, ops):
    for c in range(calls):
        call = []
        for i in range(c * ops, (c + 1) * ops):
            nid = f"py:src/pkg/module_{i % 500}.py:Class{i % 37}.method_{i}"
            data = {"id": nid, "kind": "method", "name": f"method_{i}", "file": f"src/pkg/module_{i % 500}.py",
                    "line_start": i % 1000 + 1, "line_end": i % 1000 + 9, "properties": {"run": 0}}
            call.append(("un", nid, "method", "", "", canonical(data), ""))
        yield call


def file_calls(files):
    rng = random.Random(1)
    earlier = []
    for f in range(files):
        path = f"Lib/pkg{f % 10}/mod_{f}.py"
        fid = f"file:{path}"
        call = [("un", fid, "file", "", "", canonical({"id": fid, "kind": "file", "name": f"mod_{f}.py", "file": path,
                                                       "properties": {"language": "python"}}), "")]
        methods = [f"py:{path}:Class{k % 3}.func_{k}" for k in range(30)]
        for k, nid in enumerate(methods):
            call.append(("un", nid, "method", "", "", canonical({
                "id": nid, "kind": "method", "name": f"func_{k}", "file": path, "line_start": k * 10 + 1,
                "line_end": k * 10 + 9, "properties": {"qualified_name": f"Class{k % 3}.func_{k}"}}), ""))
        def rel(source, rtype, target, props):
            rid = f"{source}|{rtype}|{target}"
            return ("ur", rid, rtype, source, target, canonical(
                {"id": rid, "type": rtype, "source": source, "target": target, "properties": props}), "")
        call += [rel(fid, "contains", nid, {}) for nid in methods]
        for k, nid in enumerate(methods):
            far = rng.choice(earlier) if earlier else methods[(k + 7) % 30]
            call += [rel(nid, "calls", t, {"confidence": 0.9}) for t in (methods[(k + 1) % 30], far, methods[(k + 13) % 30])]
        call = list({op[1]: op for op in call}.values())
        earlier += methods
        yield call


def run(library, workload, args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    r = Resp(port)
                    r("PING")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            r("FUNCTION", "LOAD", "REPLACE", library)
            calls = list(node_calls(args.calls, args.ops) if workload == "nodes" else file_calls(args.calls))
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu():
                fields = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks

            ops = sum(len(c) for c in calls)
            before = cpu()
            for call in calls:
                argv = ["cg_mutate", 1, "code_graph:{bench}", "bench", 0, "PUBLISH", "", len(call)]
                for op in call:
                    argv += op
                r("FCALL", *argv)
            spent = cpu() - before
            prof = r("HGETALL", "prof") or []
            phases = {prof[i].decode(): float(prof[i + 1]) * 1e6 / ops for i in range(0, len(prof), 2)}
            return spent * 1e6 / ops, phases, ops
        finally:
            server.kill()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls (nodes) or files (files)")
    parser.add_argument("--ops", type=int, default=1000, help="node upserts per call (nodes)")
    parser.add_argument("--workload", choices=("nodes", "files"), default="nodes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--library", default=os.path.join(ROOT, "shared", "src", "functions.lua"))
    parser.add_argument("--without-versions", action="store_true",
                        help="ablation: the library without its versions hash (what that hash costs)")
    args = parser.parse_args()
    source = open(args.library).read()
    if args.without_versions:
        source = without_versions(source)
    plain, phased = [], {p: [] for p in PHASES}
    for _ in range(args.runs):
        per_op, _, ops = run(source, args.workload, args)
        plain.append(per_op)
        _, phases, _ = run(probed(source), args.workload, args)
        for p in PHASES:
            phased[p].append(phases.get(p, 0.0))
    print(f"{args.workload}: {ops} operations per run, {args.runs} runs")
    print(f"redis-server CPU per operation: median {statistics.median(plain):.2f} µs "
          f"({' / '.join(f'{v:.2f}' for v in plain)})")
    print("inside cg_mutate, wall µs per operation (probed library, medians): " +
          ", ".join(f"{p} {statistics.median(phased[p]):.2f}" for p in PHASES))


if __name__ == "__main__":
    main()
