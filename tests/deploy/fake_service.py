#!/usr/bin/env python3
"""Stands in for a service binary in stack_test.sh: listens on CODEGRAPH__HTTP__ADDR, answers /health and /ready,
logs every request (with its body) to stdout, and accepts the reanalyze POST like graph-api does. It also logs
the CODEGRAPH__ variables it got, so the test can check what scripts/stack.sh hands each service."""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/health", "/ready"):
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        print(f"POST {self.path} {body}", flush=True)
        self._answer(202, {"job_id": "fake-1"})

    def log_message(self, *args):
        pass


def main():
    host, port = os.environ["CODEGRAPH__HTTP__ADDR"].rsplit(":", 1)
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("CODEGRAPH__")}
    print(f"{os.path.basename(sys.argv[0])} env {json.dumps(env)}", flush=True)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
