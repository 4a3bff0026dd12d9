#!/usr/bin/env python3
"""The container deployment, for real: `docker-compose up -d` of docker-compose-multi.yml (with the offline
override when the images are the local stand-ins), then checks from the host, only through ports published on
127.0.0.1, what a user's first `up` relies on (issue 16):

  - every container is healthy per its own HEALTHCHECK and runs as a non-root user;
  - the dashboard page loads through the nginx container, /api and /ws are proxied;
  - the stack queues the first analysis of the mounted repository by itself, and it fills the graph;
  - the 3 gateway replicas each serve clients; clients streaming through nginx while one gateway container is
    `docker kill`ed reconnect (with ?since=) and miss no event; `docker stop` of another drains its clients
    with close code 1012;
  - `docker-compose restart redis` (append-only file on) keeps the graph and the stream, and the services recover;
  - `--scale ws-gateway=5` works, and new clients reach the new replicas after the nginx reload (SIGHUP) that
    deploy/README.md documents;
  - stream-consumer feeds the FalkorDB container (counts equal graph-api's stats);
  - graph-api reads that container: `POST /api/graph/query` through nginx answers with rows, and `/mcp` through
    nginx answers an MCP `initialize`;
  - `docker-compose down -v` leaves no container, network or volume of the project (also when a check failed).

A test-only override (compose.test.yml beside this file) publishes Redis, FalkorDB and each gateway replica on
ephemeral 127.0.0.1 ports, for the probes; the user's files are used as they are otherwise.
Every wait has a deadline, none is a fixed sleep. One PASS/FAIL line per check, then `N passed, M failed`.

Usage: compose_test.py [--offline]   (the images must exist: `make images`)
Environment: CONTAINERS_TEST_PROJECT (compose project name, default codegraph-test).
"""
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT = os.environ.get("CONTAINERS_TEST_PROJECT", "codegraph-test")
# Writes of the replica checks go to their own graph project, so the analysis of `default` does not mix in.
GRAPH_PROJECT = "containers"
STACK_DEADLINE_S = 240
DEADLINE_S = 90
GATEWAY_PORT = 8001


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DASHBOARD_PORT = free_port()
COMPOSE_FILES = ["docker-compose-multi.yml"]
if "--offline" in sys.argv:
    COMPOSE_FILES.append("deploy/docker/compose.offline.yml")
COMPOSE_FILES.append(os.path.relpath(os.path.join(os.path.dirname(__file__), "compose.test.yml"), REPO))
ENV = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT, CODEGRAPH_DASHBOARD_PORT=str(DASHBOARD_PORT),
           CODEGRAPH_ANALYZE_PATH=REPO, CODEGRAPH_MEMGRAPH_URL="")


def compose(*args, check=True):
    cmd = ["docker-compose"]
    for f in COMPOSE_FILES:
        cmd += ["-f", f]
    out = subprocess.run(cmd + list(args), cwd=REPO, env=ENV, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)}: {out.stderr.strip()[-2000:]}")
    return out.stdout


def docker(*args, check=True):
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {out.stderr.strip()[-1000:]}")
    return out.stdout


def wait_for(what, condition, deadline_s=DEADLINE_S, interval=0.25):
    """Polls condition() until it returns a truthy value (returned), or fails naming `what` and the last value."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            last = condition()
            if last and not isinstance(last, Exception):
                return last
        except (OSError, AssertionError, ValueError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s} s (last: {last!r})")
        time.sleep(interval)


# --- the stack's containers -------------------------------------------------------------------------------

def containers(service=None, all_states=False):
    """Container ids of the project (of one service), as docker sees them."""
    args = ["ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
    if service:
        args += ["--filter", f"label=com.docker.compose.service={service}"]
    if all_states:
        args.append("-a")
    return docker(*args).split()


def inspect(ids):
    return json.loads(docker("inspect", *ids)) if ids else []


def service_of(c):
    return c["Config"]["Labels"]["com.docker.compose.service"]


def not_healthy(ids=None):
    """Names of the running containers that are not healthy yet; one-shot first-analysis must have exited 0."""
    bad = []
    for c in inspect(ids or containers(all_states=True)):
        name, state = c["Name"].lstrip("/"), c["State"]
        if service_of(c) == "first-analysis":
            if state["Status"] != "exited" or state["ExitCode"] != 0:
                bad.append(f"{name}: {state['Status']} (exit {state['ExitCode']})")
        elif state.get("Health", {}).get("Status") != "healthy":
            bad.append(f"{name}: {state['Status']}/{state.get('Health', {}).get('Status', 'no healthcheck')}")
    return bad


def wait_all_healthy(deadline_s=STACK_DEADLINE_S):
    wait_for("every container healthy", lambda: not not_healthy() or None, deadline_s, interval=0.5)


def published(service, port, index=None):
    """The 127.0.0.1 port docker published for `port` of the service's container (replica `index`)."""
    args = ["port"] + (["--index", str(index)] if index else []) + [service, str(port)]
    host, _, p = compose(*args).strip().rpartition(":")
    assert host == "127.0.0.1", f"{service}:{port} is published on {host}, not 127.0.0.1"
    return int(p)


def gateway_ports():
    """{container id: published port} of every running ws-gateway replica."""
    ports = {}
    for c in inspect(containers("ws-gateway")):
        binding = (c["NetworkSettings"]["Ports"] or {}).get(f"{GATEWAY_PORT}/tcp") or []
        for b in binding:
            assert b["HostIp"] == "127.0.0.1", f"a gateway is published on {b['HostIp']}"
            ports[c["Id"]] = int(b["HostPort"])
    return ports


# --- HTTP and WebSocket through the published ports ----------------------------------------------------------

def http(port, path, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(path, method="GET", body=None):
    status, raw = http(DASHBOARD_PORT, "/api/graph" + path, method, body)
    if status >= 300:
        raise AssertionError(f"{method} /api/graph{path}: {status} {raw[:300]!r}")
    return json.loads(raw)


def redis_cli(service, *args):
    out = subprocess.run(["redis-cli", "-p", str(published(service, 6379)), "--no-raw", *args],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or out.stdout.startswith("(error)"):
        raise AssertionError(f"redis-cli {' '.join(args)}: {out.stdout}{out.stderr}")
    return out.stdout


class WebSocket:
    """A minimal RFC 6455 client over a plain socket: text frames in, close code out."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline().decode()
        if " 101 " not in status:
            raise AssertionError(f"upgrade of {path} answered {status.strip()!r}")
        while self.file.readline() not in (b"\r\n", b""):
            pass
        # Streams are idle for long stretches; close() is what ends a blocked read.
        self.sock.settimeout(None)

    def receive(self):
        """The next text frame as a str, or ('close', code) for a close frame or a cut connection."""
        while True:
            head = self.file.read(2)
            if len(head) < 2:
                return ("close", None)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.file.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.file.read(8), "big")
            payload = self.file.read(length)
            if opcode == 0x8:
                return ("close", int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None)
            if opcode == 0x9:  # ping: answer, as a browser does
                self.send(payload, opcode=0xA)
            elif opcode == 0x1:
                return payload.decode()

    def send(self, payload, opcode=0x1):
        mask = os.urandom(4)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(
            payload).to_bytes(2, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def frame_changes(event):
    """The changes a CDC frame carries, each as (entry id, index): a change set holds many (a partly filtered one
    gives each kept change its `index`), a single event (job events, graph_reset, streams written before change
    sets) is one. None for a control message."""
    if "id" not in event:
        return None
    if event.get("type") == "change_set":
        return [(event["id"], change.get("index", position)) for position, change in enumerate(event["changes"])]
    if "entity" in event:
        return [(event["id"], 0)]
    return None


class StreamingClient(threading.Thread):
    """Follows GRAPH_PROJECT's events through nginx like the dashboard does: on a cut or a 1012 it reconnects with
    ?since=<last entry id>, so it should miss nothing. Records every change it got, as (entry id, index), and
    every close code."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ids, self.closes, self.last = [], [], None
        self.stopping = False
        self.ws = self.connect()

    def connect(self):
        """Connects and waits for `subscribed`: only from then on is every new event sure to come."""
        since = f"&since={self.last}" if self.last else ""
        ws = WebSocket(DASHBOARD_PORT, f"/ws/events?project={GRAPH_PROJECT}{since}")
        while True:
            msg = ws.receive()
            if isinstance(msg, tuple):
                raise AssertionError(f"closed before subscribing: {msg}")
            if self.record(msg) == "subscribed":
                break
        return ws

    def record(self, msg):
        """Keeps a CDC frame's changes; returns the message's type."""
        event = json.loads(msg)
        changes = frame_changes(event)
        if changes:
            self.ids.extend(changes)
            self.last = event["id"]
        return event.get("type")

    def run(self):
        while not self.stopping:
            msg = self.ws.receive()
            if isinstance(msg, tuple):
                self.closes.append(msg[1])
                self.ws.close()
                if self.stopping:
                    return
                self.ws = wait_for("a reconnect through nginx", self.connect, interval=0.2)
                continue
            self.record(msg)

    def stop(self):
        self.stopping = True
        self.ws.close()


# --- the checks ---------------------------------------------------------------------------------------------

state = {}


def check_stack_comes_up():
    start = time.monotonic()
    compose("up", "-d")
    wait_all_healthy()
    state["healthy_after_s"] = time.monotonic() - start
    print(f"    every container healthy {state['healthy_after_s']:.1f} s after up -d")
    services = {service_of(c) for c in inspect(containers())}
    expected = {"redis", "falkordb", "graph-api", "ws-gateway", "stream-consumer", "analysis-worker", "dashboard"}
    assert services == expected, f"running services {sorted(services)}, expected {sorted(expected)}"
    assert len(containers("ws-gateway")) == 3, "ws-gateway should run as 3 replicas"


def check_image_sizes():
    """The dashboard image is at most 80 MB (issue 16's goal, on either base); every image's size is printed."""
    sizes = {}
    for c in inspect(containers()):
        image = c["Config"]["Image"]
        if image not in sizes:
            sizes[image] = int(docker("image", "inspect", "--format", "{{.Size}}", image).strip())
    for image, size in sorted(sizes.items()):
        print(f"    {image}: {size / 1e6:.1f} MB")
    dashboard = [size for image, size in sizes.items() if "dashboard" in image]
    assert dashboard and dashboard[0] <= 80e6, f"dashboard image {dashboard} bytes, goal <= 80 MB"


def check_non_root():
    for c in inspect(containers()):
        rows = docker("top", c["Id"], "-eo", "uid,pid,comm").splitlines()[1:]
        root = [r for r in rows if r.split()[0] == "0"]
        assert rows and not root, f"{c['Name']} runs processes as root: {root}"


def check_dashboard_and_proxies():
    status, page = http(DASHBOARD_PORT, "/")
    assert status == 200 and b'<div id="app"' in page, f"dashboard page: {status} {page[:200]!r}"
    asset = page.split(b'src="', 1)[1].split(b'"', 1)[0].decode()
    status, _ = http(DASHBOARD_PORT, asset)
    assert status == 200, f"dashboard asset {asset}: {status}"
    assert "nodes" in api("/stats"), "/api/graph/stats through nginx"
    ws = WebSocket(DASHBOARD_PORT, "/ws/events?project=default")
    ws.send(b'{"type":"ping"}')
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        msg = ws.receive()
        assert not isinstance(msg, tuple), f"/ws/events closed: {msg}"
        if json.loads(msg).get("type") == "pong":
            break
    ws.close()


def check_first_analysis_fills_graph():
    """first-analysis's one line of output is graph-api's answer with the job id; the job must complete."""
    logs = compose("logs", "--no-color", "first-analysis")
    job_id = json.loads(logs[logs.index("{"):].splitlines()[0])["job_id"]
    job = wait_for("the first analysis to complete",
                   lambda: (lambda j: j if j["status"] in ("completed", "failed", "cancelled") else None)(
                       api(f"/admin/jobs/{job_id}")), deadline_s=STACK_DEADLINE_S)
    assert job["status"] == "completed", f"first analysis: {job}"
    stats = api("/stats")
    assert stats["nodes"] > 100 and stats["relationships"] > 100, f"graph after the first analysis: {stats}"
    state["stats"] = stats


def write_node(i):
    api(f"/nodes?project={GRAPH_PROJECT}", "POST", {"id": f"container-test-{i}", "kind": "file", "name": f"n{i}"})


def stream_through(disruption, clients_n=9):
    """Starts clients_n streaming clients, writes nodes before, during and after `disruption()`, and checks that
    every client got every change (each write is one change set of one change). Returns the clients."""
    clients = [StreamingClient() for _ in range(clients_n)]
    for c in clients:
        c.start()
    base = state.setdefault("written", 0)
    for i in range(base, base + 5):
        write_node(i)
    disruption()
    for i in range(base + 5, base + 15):
        write_node(i)
    state["written"] = base + 15
    expected = 15
    try:
        wait_for("every streaming client to get every event",
                 lambda: all(len(set(c.ids)) >= expected for c in clients)
                 or AssertionError(f"changes per client {[len(set(c.ids)) for c in clients]} of {expected}, "
                                   f"closes {[c.closes for c in clients]}"))
        for c in clients:
            assert len(c.ids) == len(set(c.ids)) == expected, f"a client got {len(c.ids)} changes, expected {expected}"
    finally:
        for c in clients:
            c.stop()
    return clients


def check_replicas_serve_clients():
    ports = gateway_ports()
    assert len(ports) == 3, f"published gateway replicas: {ports}"
    before = {cid: gateway_clients(p) for cid, p in ports.items()}
    sockets = [WebSocket(DASHBOARD_PORT, f"/ws/events?project={GRAPH_PROJECT}") for _ in range(9)]
    try:
        wait_for("each gateway replica to serve some of 9 new clients",
                 lambda: all(gateway_clients(p) > before[cid] for cid, p in ports.items()) or None)
    finally:
        for s in sockets:
            s.close()


def gateway_clients(port):
    status, raw = http(port, "/status")
    assert status == 200, f"gateway /status: {status}"
    return json.loads(raw)["clients"]["connected"]


def check_kill_gateway_misses_no_event():
    victim = containers("ws-gateway")[0]

    def kill():
        docker("kill", victim)

    try:
        clients = stream_through(kill)
        assert any(c.closes for c in clients), "no client was cut by the kill (none was on the killed replica)"
    finally:
        docker("start", victim)
        wait_all_healthy()


def check_stop_gateway_drains_with_1012():
    victim = containers("ws-gateway")[1]

    def stop():
        docker("stop", victim)

    try:
        clients = stream_through(stop)
        codes = [code for c in clients for code in c.closes]
        assert 1012 in codes, f"close codes seen while a gateway stopped: {codes}"
    finally:
        docker("start", victim)
        wait_all_healthy()


def check_redis_restart_keeps_data():
    stats, stream_len = api("/stats"), redis_cli("redis", "XLEN", "code_graph:{default}:cdc")
    assert int(stream_len.split()[-1]) > 0, f"stream length {stream_len}"
    compose("restart", "redis")
    wait_for("graph-api to answer after the Redis restart", lambda: api("/stats"), interval=0.5)
    assert api("/stats") == stats, "graph changed across the Redis restart"
    assert redis_cli("redis", "XLEN", "code_graph:{default}:cdc") == stream_len, "stream changed across the restart"
    wait_all_healthy()
    clients = stream_through(lambda: None, clients_n=3)
    assert clients, "writes and streaming after the Redis restart"


def check_scale_to_five():
    compose("up", "-d", "--no-recreate", "--scale", "ws-gateway=5")
    wait_all_healthy()
    ports = gateway_ports()
    assert len(ports) == 5, f"{len(ports)} gateway replicas after --scale ws-gateway=5"
    # nginx resolved ws-gateway when it started; the documented reload makes it resolve the new replicas.
    compose("kill", "-s", "HUP", "dashboard")
    before = {cid: gateway_clients(p) for cid, p in ports.items()}
    sockets = []
    try:
        def spread():
            sockets.append(WebSocket(DASHBOARD_PORT, f"/ws/events?project={GRAPH_PROJECT}"))
            return all(gateway_clients(p) > before[cid] for cid, p in ports.items()) or None

        wait_for("new clients to reach all 5 replicas after the nginx reload", spread)
    finally:
        for s in sockets:
            s.close()


def falkordb_count(query):
    out = redis_cli("falkordb", "GRAPH.RO_QUERY", "codegraph_default", query)
    # --no-raw prints the header row, then the value row: the count is the first integer after the header.
    return int([line for line in out.splitlines() if line.strip().split(")")[-1].strip().isdigit()][0]
               .split(")")[-1].strip())


def check_falkordb_matches_stats():
    stats = api("/stats")
    wait_for("FalkorDB's counts to equal graph-api's stats",
             lambda: (falkordb_count("MATCH (n:Node) RETURN count(n)") == stats["nodes"]
                      and falkordb_count("MATCH (:Node)-[r]->(:Node) RETURN count(r)") == stats["relationships"])
             or None)


def check_cypher_query_through_nginx():
    """POST /api/graph/query through nginx answers from the FalkorDB container (graph-api's [falkordb] URL),
    with the freshness of the first analysis: min_id is the project's last stream ID, so the count is final."""
    last = api("/stats")["last_event_id"]
    body = {"statement": "MATCH (n) RETURN count(n)", "min_id": last}
    # 503 no_graph until the sink first wrote the project; the first analysis has completed, so not for long.
    answer = wait_for("POST /api/graph/query to answer", lambda: api("/query", "POST", body))
    assert len(answer["columns"]) == 1, f"columns: {answer}"
    assert len(answer["rows"]) == 1 and answer["rows"][0][0] > 0, f"rows: {answer}"
    assert answer["applied_id"] is not None, f"the sink's applied_id: {answer}"
    print(f"    MATCH (n) RETURN count(n): {answer['rows'][0][0]} (applied {answer['applied_id']}, "
          f"waited {answer['waited_ms']} ms)")


def check_mcp_initialize_through_nginx():
    """An MCP `initialize` POST to /mcp through nginx (Streamable HTTP, as tests/mcp sends it) is answered with
    the server's info and a session id; the answer is a server-sent event, read until its JSON-RPC result."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "compose-test", "version": "1"}}}
    req = urllib.request.Request(f"http://127.0.0.1:{DASHBOARD_PORT}/mcp", data=json.dumps(init).encode(),
                                 method="POST", headers={"content-type": "application/json",
                                                         "accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=10) as r:
        session = r.headers.get("mcp-session-id")
        kind = r.headers.get("content-type", "")
        if kind.startswith("application/json"):
            message = json.loads(r.read())
        else:
            assert kind.startswith("text/event-stream"), f"/mcp answered {r.status} {kind}"
            message = None
            for line in r:  # the stream may stay open after the result: stop at it
                data = line.decode().strip()
                if data.startswith("data:") and data[5:].strip():
                    message = json.loads(data[5:])
                    if message.get("id") == 1:
                        break
    assert message and message.get("id") == 1, f"no answer to initialize: {message}"
    result = message.get("result") or {}
    assert result.get("serverInfo", {}).get("name") == "codegraph", f"initialize answered {message}"
    assert "tools" in result.get("capabilities", {}), f"no tools capability: {result}"
    assert session, "no mcp-session-id header on the initialize answer"
    # End the session (rmcp answers DELETE with 2xx; a failure to end it fails nothing else).
    status, _ = http_request("DELETE", "/mcp", {"mcp-session-id": session})
    print(f"    {result.get('protocolVersion')}, session {session[:8]}..., DELETE answered {status}")


def http_request(method, path, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{DASHBOARD_PORT}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_down_leaves_nothing():
    compose("down", "-v", "--remove-orphans")
    label = f"label=com.docker.compose.project={PROJECT}"
    left = (docker("ps", "-aq", "--filter", label).split() + docker("network", "ls", "-q", "--filter", label).split()
            + docker("volume", "ls", "-q", "--filter", label).split())
    assert not left, f"left behind by down -v: {left}"


def main():
    passed = failed = 0
    checks = [
        ("the stack comes up and every container is healthy", check_stack_comes_up),
        ("every container runs as a non-root user", check_non_root),
        ("the dashboard image is at most 80 MB", check_image_sizes),
        ("the dashboard loads through nginx; /api and /ws are proxied", check_dashboard_and_proxies),
        ("the stack queues the first analysis by itself and it fills the graph", check_first_analysis_fills_graph),
        ("each of the 3 gateway replicas serves clients", check_replicas_serve_clients),
        ("docker kill of a gateway: clients reconnect and miss no event", check_kill_gateway_misses_no_event),
        ("docker stop of a gateway drains its clients with 1012", check_stop_gateway_drains_with_1012),
        ("stream-consumer feeds FalkorDB (counts equal graph-api's stats)", check_falkordb_matches_stats),
        ("POST /api/graph/query through nginx answers rows from FalkorDB", check_cypher_query_through_nginx),
        ("/mcp through nginx answers an MCP initialize", check_mcp_initialize_through_nginx),
        ("docker-compose restart redis keeps graph and stream; services recover", check_redis_restart_keeps_data),
        ("--scale ws-gateway=5: new clients reach the new replicas after nginx reload", check_scale_to_five),
        ("every container still runs as a non-root user", check_non_root),
    ]
    try:
        for name, fn in checks:
            start = time.monotonic()
            try:
                fn()
                print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)
                passed += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported, the next check still runs
                print(f"FAIL {name}: {e}", flush=True)
                failed += 1
                if fn is check_stack_comes_up:
                    print(compose("ps", check=False))
                    print(compose("logs", "--no-color", "--tail", "30", check=False)[-6000:])
                    break
    finally:
        try:
            check_down_leaves_nothing()
            print("PASS docker-compose down -v leaves nothing behind", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001
            print(f"FAIL docker-compose down -v leaves nothing behind: {e}", flush=True)
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
