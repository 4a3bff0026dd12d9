#!/usr/bin/env python3
"""Runs the real load balancer (deploy/nginx/render.sh + locations.conf) against stub replicas and checks what
the services rely on: /api/ reaches graph-api with its path, /ws/ upgrades to a WebSocket that carries frames
both ways, the gateways share the connections round robin, a dead replica is skipped, the dashboard's SPA
fallback and asset caching work, the access log never records a query string (`?token=`), and none of it needs
root (as root, nginx runs as `nobody`).

Standard library only. Exit 0 when every check passes. Stubs and nginx are stopped on exit.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RENDER = os.path.join(REPO, "deploy", "nginx", "render.sh")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEADLINE_S = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_head(sock_file):
    """Reads one HTTP request head; returns (method, path, headers with lower-case names) or None."""
    line = sock_file.readline().decode("latin-1")
    if not line:
        return None
    method, path, _ = line.split(" ", 2)
    headers = {}
    while True:
        h = sock_file.readline().decode("latin-1").rstrip("\r\n")
        if not h:
            break
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, path, headers


def read_frame(f):
    """Reads one WebSocket frame; returns its payload (unmasked)."""
    b1, b2 = f.read(2)
    length = b2 & 0x7F
    if length == 126:
        length = int.from_bytes(f.read(2), "big")
    elif length == 127:
        length = int.from_bytes(f.read(8), "big")
    mask = f.read(4) if b2 & 0x80 else None
    data = f.read(length)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return data


def frame(payload, masked):
    head = bytes([0x81])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    else:
        head += bytes([mask_bit | 126]) + len(payload).to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Replica(socketserver.ThreadingTCPServer):
    """A stub service: JSON echo of the request for HTTP, a WebSocket echo tagged with its name for upgrades."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, port):
        self.name = name
        super().__init__(("127.0.0.1", port), ReplicaHandler)


class ReplicaHandler(socketserver.StreamRequestHandler):
    def handle(self):
        head = read_head(self.rfile)
        if head is None:
            return
        method, path, headers = head
        if headers.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(
                hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()
            ).decode()
            self.wfile.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            self.wfile.flush()
            payload = read_frame(self.rfile)
            self.wfile.write(frame(self.server.name.encode() + b":" + payload, masked=False))
            self.wfile.flush()
            return
        body = json.dumps(
            {"replica": self.server.name, "method": method, "path": path, "headers": headers}
        ).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )


def start_replica(name):
    port = free_port()
    server = Replica(name, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{port}"


def websocket_roundtrip(lb_port, path, message):
    """Opens a WebSocket through the balancer, sends one text frame, returns the echoed text."""
    with socket.create_connection(("127.0.0.1", lb_port), timeout=DEADLINE_S) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        f = s.makefile("rb")
        status = f.readline().decode()
        if " 101 " not in status:
            raise AssertionError(f"upgrade answered {status.strip()!r}")
        while f.readline() not in (b"\r\n", b""):
            pass
        s.sendall(frame(message.encode(), masked=True))
        return read_frame(f).decode()


def http_get(lb_port, path, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{lb_port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE_S) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_until_up(lb_port, proc, error_log):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {read(error_log)}")
        try:
            if http_get(lb_port, "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nginx not answering on :{lb_port} after {DEADLINE_S}s: {read(error_log)}")


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def read_all(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def nginx_command(run_dir):
    cmd = ["nginx", "-p", run_dir, "-c", f"{run_dir}/nginx.conf", "-e", f"{run_dir}/error.log"]
    if os.geteuid() == 0:
        # Prove the unprivileged path: the whole run dir belongs to nobody, and so does nginx.
        for dirpath, dirnames, filenames in os.walk(run_dir):
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                shutil.chown(name, "nobody", "nogroup")
        os.chmod(os.path.dirname(run_dir), 0o755)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return cmd


def main():
    failures = []

    def check(name, fn):
        try:
            fn()
            print(f"  ok   {name}")
        except Exception as e:  # a failed check is reported, the others still run
            failures.append(name)
            print(f"  FAIL {name}: {e}")

    api, api_addr = start_replica("graph-api")
    gateways = [start_replica(f"gw{i}") for i in range(3)]
    dead_addr = f"127.0.0.1:{free_port()}"  # nothing listens there
    lb_port = free_port()
    base = tempfile.mkdtemp(prefix="lb-test-")
    run_dir = os.path.join(base, "run")
    www = os.path.join(base, "www")
    os.makedirs(os.path.join(www, "assets"))
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<!doctype html><title>Code Graph Live</title>")
    with open(os.path.join(www, "assets", "app-1234.js"), "w") as f:
        f.write("console.log(1)")
    os.chmod(base, 0o755)
    ws_list = ",".join([gateways[0][1], dead_addr, gateways[1][1], gateways[2][1]])
    subprocess.run(
        [
            "sh", RENDER, "--run-dir", run_dir, "--listen", f"127.0.0.1:{lb_port}", "--root", www,
            "--graph-api", api_addr, "--ws-gateway", ws_list, "--daemon-off", "--fail-timeout", "30",
            *(["--user", "nobody"] if os.geteuid() == 0 else []),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(nginx_command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_up(lb_port, proc, os.path.join(run_dir, "error.log"))

        def api_path_and_headers():
            status, _, body = http_get(lb_port, "/api/graph/stats?project=default")
            seen = json.loads(body)
            assert status == 200, status
            assert seen["replica"] == "graph-api", seen
            assert seen["path"] == "/api/graph/stats?project=default", seen["path"]
            assert seen["headers"].get("x-forwarded-for") == "127.0.0.1", seen["headers"]
            assert seen["headers"].get("x-request-id"), "no x-request-id"

        def websocket_frames_both_ways():
            echoed = websocket_roundtrip(lb_port, "/ws/events?since=0-0", "hello")
            assert echoed.endswith(":hello"), echoed

        def round_robin_skips_dead_replica():
            seen = Counter(
                websocket_roundtrip(lb_port, "/ws/events", "x").split(":")[0] for _ in range(12)
            )
            assert set(seen) == {"gw0", "gw1", "gw2"}, seen
            assert max(seen.values()) - min(seen.values()) <= 2, f"uneven: {dict(seen)}"

        def plain_request_to_ws_closes_upstream():
            _, _, body = http_get(lb_port, "/ws/status")
            assert json.loads(body)["headers"].get("connection") == "close", body

        def spa_fallback_and_caching():
            status, headers, body = http_get(lb_port, "/graph/some/client/route")
            assert status == 200 and b"Code Graph Live" in body, (status, body[:80])
            status, headers, _ = http_get(lb_port, "/assets/app-1234.js")
            assert status == 200 and "immutable" in headers.get("Cache-Control", ""), headers
            status, _, _ = http_get(lb_port, "/assets/missing.js")
            assert status == 404, f"missing asset answered {status}, not 404"
            status, headers, _ = http_get(lb_port, "/")
            assert status == 200 and headers.get("Cache-Control") == "no-cache", headers

        def access_log_never_records_a_token():
            secrets = ["tok-api-5b1e", "tok-ws-9c2d", "tok-ref-77aa"]
            status, _, _ = http_get(lb_port, f"/api/graph/stats?project=default&token={secrets[0]}",
                                    {"Referer": f"http://127.0.0.1:{lb_port}/graph?token={secrets[2]}"})
            assert status == 200, status
            websocket_roundtrip(lb_port, f"/ws/events?token={secrets[1]}&since=0-0", "x")
            log_path = os.path.join(run_dir, "access.log")
            deadline = time.monotonic() + DEADLINE_S
            # nginx writes a request's line when it ends (a WebSocket's when it closes): wait for both.
            while True:
                log = read_all(log_path)
                if "/api/graph/stats" in log and "/ws/events" in log:
                    break
                assert time.monotonic() < deadline, f"no access log lines for the requests: {log[-500:]!r}"
                time.sleep(0.02)
            leaked = [t for t in secrets if t in log]
            assert not leaked, f"the access log holds {leaked}: {log[-800:]}"
            assert "token=" not in log and "?" not in log, log[-800:]

        check("/api/ reaches graph-api with its path and forwarding headers", api_path_and_headers)
        check("/ws/ upgrades and carries frames both ways", websocket_frames_both_ways)
        check("/ws/ round robin over 3 gateways, dead replica skipped", round_robin_skips_dead_replica)
        check("/ws/ without upgrade closes the upstream connection", plain_request_to_ws_closes_upstream)
        check("/ SPA fallback, immutable assets, uncached index.html", spa_fallback_and_caching)
        check("the access log never records ?token= (paths only, Referer cut too)", access_log_never_records_a_token)
    except Exception as e:
        failures.append("nginx start")
        print(f"  FAIL nginx start: {e}")
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
        for server in [api] + [g for g, _ in gateways]:
            server.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
