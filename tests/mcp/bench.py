#!/usr/bin/env python3
"""Latency of graph-api's MCP server as an agent sees it (docs/BENCHMARKS.md, "MCP"), with the official Python SDK
over Streamable HTTP.

Starts redis-server, graph-api and the analysis-worker (from $STACK_BIN_DIR, default target/release) like
tests/mcp/mcp_test.py, analyses PATH (default: the cargo registry sources of this machine) into project `bench`
unless that project is already there, then:

  1. tool calls: `find_callers`, `get_symbol_context`, `impact_analysis` (depth 3) on --symbols functions and
     methods picked at random (seeded) among those the analysis found, --calls calls each, one at a time;
     p50/p99/max of the time from sending `tools/call` to its result;
  2. notifications: a client subscribed to `codegraph://bench/stats`; --mutations single-node upserts through
     `POST /api/graph/nodes`, spaced 250 ms (beyond the 200 ms coalescing window, so each is a first change);
     p50/p99/max from the POST's send to `notifications/resources/updated` at the client;
  3. a burst: 2,000 upserts in one `POST /batch` chunked by 1,000 and 20 single POSTs as fast as they go: how many
     notifications arrive and how long after the last change the last one comes.

Usage: python3 tests/mcp/bench.py [--path PATH] [--calls 300] [--symbols 100] [--mutations 200]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

import anyio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcp_test  # noqa: E402
from mcp_test import TOKENS, Notifications, Stack, wait_until  # noqa: E402

PROJECT = "bench"


def percentiles(samples):
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {pick(0.5) * 1000:.2f} ms, p99 {pick(0.99) * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms " \
           f"({len(ordered)} samples)"


def analyse(stack, path):
    status, body = stack.request("POST", f"/api/graph/admin/reanalyze?project={PROJECT}", TOKENS["write"],
                                 {"path": path, "mode": "full"})
    job = json.loads(body)["job_id"]
    start = time.monotonic()

    def done():
        _, b = stack.request("GET", f"/api/graph/admin/jobs/{job}", TOKENS["read"])
        return json.loads(b)["status"] in ("completed", "failed", "cancelled")
    wait_until(done, 3600, "the analysis ended")
    print(f"analysed {path} in {time.monotonic() - start:.0f} s", flush=True)


def symbols(stack, count, seed):
    """Function and method ids, from the nodes hash (HSCAN through redis-cli), a seeded sample."""
    ids = []
    cursor = "0"
    while True:
        out = stack.redis_cli("--raw", "HSCAN", f"code_graph:{{{PROJECT}}}:nodes", cursor, "COUNT", "5000").split("\n")
        cursor, rest = out[0], out[1:]
        for key, value in zip(rest[::2], rest[1::2]):
            if '"kind":"function"' in value or '"kind":"method"' in value:
                ids.append(key)
        if cursor == "0" or len(ids) > 50 * count:
            break
    random.Random(seed).shuffle(ids)
    return ids[:count]


async def run(stack, args):
    url = stack.base + "/mcp"
    notes = Notifications()
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write, message_handler=notes.handler) as session:
                await session.initialize()
                stats = (await session.call_tool("project_statistics", {"project": PROJECT})).structured_content
                print(f"project {PROJECT}: {stats['nodes']} nodes, {stats['relationships']} relationships", flush=True)
                picked = symbols(stack, args.symbols, 1)
                for tool, extra in [("find_callers", {}), ("get_symbol_context", {}),
                                    ("impact_analysis", {"depth": 3})]:
                    samples = []
                    for i in range(args.calls):
                        start = time.perf_counter()
                        r = await session.call_tool(tool, {"project": PROJECT, "symbol": picked[i % len(picked)],
                                                           **extra})
                        samples.append(time.perf_counter() - start)
                        assert not r.is_error, r.content
                    print(f"{tool}: {percentiles(samples)}", flush=True)

                uri = f"codegraph://{PROJECT}/stats"
                await session.subscribe_resource(uri)
                samples = []
                for i in range(args.mutations):
                    start = time.monotonic()
                    stack.request("POST", f"/api/graph/nodes?project={PROJECT}", TOKENS["write"],
                                  {"id": f"bench-probe-{i}", "kind": "function", "name": f"probe{i}"})
                    arrived = await notes.wait_for(uri, start, 10)
                    samples.append(arrived - start)
                    await anyio.sleep(0.25)
                print(f"mutation -> notifications/resources/updated: {percentiles(samples)}", flush=True)

                await anyio.sleep(0.5)
                before = len(notes.updated)
                ops = [{"op": "upsert_node", "node": {"id": f"bench-burst-{i}", "kind": "function",
                                                      "name": f"burst{i}"}} for i in range(2000)]
                stack.request("POST", f"/api/graph/batch?project={PROJECT}", TOKENS["write"], {"operations": ops})
                for i in range(20):
                    stack.request("POST", f"/api/graph/nodes?project={PROJECT}", TOKENS["write"],
                                  {"id": f"bench-burst-single-{i}", "kind": "function", "name": "x"})
                last_change = time.monotonic()
                await anyio.sleep(1.0)
                burst = notes.updated[before:]
                tail = (burst[-1][0] - last_change) * 1000 if burst else float("nan")
                print(f"burst of 22 calls (2,020 changes): {len(burst)} notifications, the last {tail:.1f} ms after "
                      f"the last change", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default=os.path.expanduser("~/.cargo/registry/src"))
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--mutations", type=int, default=200)
    args = parser.parse_args()
    if "STACK_BIN_DIR" not in os.environ:
        mcp_test.BIN_DIR = os.path.join(mcp_test.ROOT, "target", "release")
    work = tempfile.mkdtemp(prefix="mcp-bench-")
    root = os.path.realpath(args.path)
    stack = Stack(work, with_falkordb=False)
    try:
        # The worker may analyse only under its allowed roots: restart it allowing the path.
        stack.procs[-1].terminate()
        stack.procs[-1].wait(10)
        stack.spawn("analysis-worker-bench", [os.path.join(mcp_test.BIN_DIR, "analysis-worker")], {
            "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{mcp_test.free_port()}",
            "CODEGRAPH__ANALYSIS__ALLOWED_ROOTS": root,
        })
        analyse(stack, root)
        anyio.run(run, stack, args)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
