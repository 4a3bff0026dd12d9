#!/usr/bin/env python3
"""The schema-driven attack run on graph-api (a step of `make test`; docs/SECURITY.md quotes its summary).

Starts its own redis-server and graph-api (target/debug/graph-api, or $STACK_BIN_DIR/graph-api) on free ports with
three scoped tokens and one token that holds every scope, waits until graph-api is ready, then:

  (a) runs schemathesis against graph-api's own /openapi.json with the all-scope token: every operation, positive
      and negative data, the stateful phase; any 5xx fails the run, but for /query's 503 (the stack has no
      FalkorDB: checked apart in (b)). A second schemathesis run checks the responses against the document (schema,
      status codes, content types, valid data accepted, invalid data refused), prints each difference with its kind
      and counts them: those the document could state (graph-api's routes/declared_limits.rs; none expected) and
      those it cannot (NOT_THE_DOCUMENTS). Reported, not failed on; ATTACK_STRICT_SCHEMA=1 fails on the first kind;
  (b) sends every write operation of the document (POST, PATCH, PUT, DELETE), with a valid body aimed at entities
      that exist, with the read-only token (403 expected), with no token and with an unknown token (401), and checks
      that nothing was written: the whole data set's digest (DEBUG DIGEST), the CDC stream's length, the node count
      and the jobs stream's length are unchanged. Then the same delete with the write token does change them, so
      the check can fail;
  (c) prints a short summary.

(b) also sends each write with the all-scope token from a foreign `Origin` (403 forbidden_origin) and each POST as
text/plain (415): the CSRF guard, with nothing written either.

Environment: ATTACK_EXAMPLES (schemathesis examples per operation, default 30), ATTACK_SEED (default 1),
ATTACK_KEEP=1 keeps the work directory (logs, schemathesis reports).
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("STACK_BIN_DIR", os.path.join(ROOT, "target", "debug"))
EXAMPLES = int(os.environ.get("ATTACK_EXAMPLES", "30"))
SEED = os.environ.get("ATTACK_SEED", "1")
STRICT_SCHEMA = os.environ.get("ATTACK_STRICT_SCHEMA") == "1"

TOKENS = {
    "all": "attack-all-2f1c7d",
    "read": "attack-read-8b3e90",
    "write": "attack-write-41d6aa",
    "admin": "attack-admin-c0ffee",
}
PROJECT = "attack"
NODE_A, NODE_B = "attack.py", "attack.py::target"
REL = f"{NODE_A}|calls|{NODE_B}"
# A valid body for each write operation of the document, by method and path template.
BODIES = {
    ("post", "/api/graph/nodes"): {"id": "attack.py::new", "kind": "function", "name": "new"},
    ("patch", "/api/graph/nodes/{id}"): {"name": "renamed"},
    ("post", "/api/graph/relationships"): {"type": "imports", "source": NODE_B, "target": NODE_A},
    ("patch", "/api/graph/relationships/{id}"): {"properties": {"weight": 2}},
    ("post", "/api/graph/batch"): {
        "operations": [
            {"op": "upsert_node", "node": {"id": "attack.py::batch", "kind": "function", "name": "batch"}},
            {"op": "delete_node", "id": NODE_B},
        ]
    },
    ("post", "/api/graph/admin/reanalyze"): {"path": "/tmp"},
    ("post", "/api/graph/admin/jobs/{id}/cancel"): {},
    ("post", "/api/graph/admin/reset"): {},
}
WRITE_METHODS = ("post", "put", "patch", "delete")
# The stack has no FalkorDB (falkordb.url is empty), so /query answers a statement that passes every check of
# graph-api's with 503 `unavailable`, as its document says: the one 5xx expected, checked apart in (b).
SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/api/graph/query"
include-method = "POST"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


def declared_scopes(operation):
    """The scopes an operation of /openapi.json declares it needs (graph-api's bearer scheme)."""
    return sorted({scope for requirement in operation.get("security") or [] for scopes in requirement.values()
                   for scope in scopes})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg=""):
    print(msg, flush=True)


class Stack:
    """redis-server and graph-api, on free ports, in a work directory."""

    def __init__(self, work):
        self.work = work
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--enable-debug-command", "local", "--dir", work],
            stdout=open(os.path.join(work, "redis.log"), "wb"), stderr=subprocess.STDOUT)
        self.api = None
        self.base = None
        wait_until(lambda: self.redis_cli("PING") == "PONG", 10, "redis-server answers PING")

    def start_api(self, env_tokens):
        self.stop_api()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEGRAPH__")}
        env.update({
            "CODEGRAPH__REDIS__URL": f"redis://127.0.0.1:{self.redis_port}",
            "CODEGRAPH__HTTP__ADDR": f"127.0.0.1:{port}",
            "RUST_LOG": "warn",
            "CODEGRAPH__FALKORDB__URL": "",
        })
        env.update(env_tokens)
        self.api = subprocess.Popen([os.path.join(BIN_DIR, "graph-api")], env=env,
                                    stdout=open(os.path.join(self.work, "graph-api.log"), "ab"),
                                    stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{port}"
        wait_until(lambda: self.request("GET", "/ready")[0] == 200, 30, "graph-api is ready")

    def stop_api(self):
        if self.api:
            self.api.terminate()
            self.api.wait(10)
            self.api = None

    def stop(self):
        self.stop_api()
        self.redis.terminate()
        self.redis.wait(10)

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "--no-raw", *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().strip('"').removeprefix("(integer) ")

    def request(self, method, path, token=None, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        json_type = {} if body is None else {"Content-Type": "application/json"}
        return self.request_raw(method, path, token, data, {**json_type, **(headers or {})})

    def request_raw(self, method, path, token, data, headers):
        req = urllib.request.Request(self.base + path, data=data, method=method.upper())
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in headers.items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def state(self):
        """What a write would change: the data set's digest, the CDC stream, the nodes, the jobs stream."""
        return {
            "digest": self.redis_cli("DEBUG", "DIGEST"),
            "cdc_entries": self.redis_cli("XLEN", f"code_graph:{{{PROJECT}}}:cdc"),
            "nodes": self.redis_cli("HLEN", f"code_graph:{{{PROJECT}}}:nodes"),
            "jobs": self.redis_cli("XLEN", "code_graph:jobs"),
        }


def wait_until(cond, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out after {seconds} s waiting until {what}")


def scoped_env():
    t = TOKENS
    return {
        "CODEGRAPH__AUTH__READ_TOKENS": f"{t['all']},{t['read']}",
        "CODEGRAPH__AUTH__WRITE_TOKENS": f"{t['all']},{t['write']}",
        "CODEGRAPH__AUTH__ADMIN_TOKENS": f"{t['all']},{t['admin']}",
    }


def run_schemathesis(stack, work, schema_file, name, checks, extra=()):
    report = os.path.join(work, f"{name}.junit.xml")
    config = os.path.join(work, "schemathesis.toml")
    open(config, "w").write(SCHEMATHESIS_CONFIG)
    # The python3 that has schemathesis (scripts/deps/81-schemathesis.sh), whether or not its `st` is on the PATH.
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", config, "run", schema_file, "--url", stack.base, "-H", f"Authorization: Bearer {TOKENS['all']}",
           "--checks", checks, "-n", str(EXAMPLES), "--seed", SEED, "--workers", "1", "--request-timeout", "10",
           "--suppress-health-check", "all", "--report", "junit", "--report-junit-path", report, *extra]
    shown = shlex.join(["st", *cmd[3:]]).replace(TOKENS["all"], "$TOKEN")
    log(f"$ {shown}")
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=600)
    text = out.stdout + out.stderr
    open(os.path.join(work, f"{name}.log"), "w").write(text)
    return out.returncode, text, time.monotonic() - start


def summary_of(text):
    """schemathesis' SUMMARY block (operations, phases, failures, test cases)."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if "SUMMARY" in l), len(lines))
    return [l for l in lines[start + 1:] if l.strip() and not l.startswith("=")] + \
        [l for l in lines[start:] if l.startswith("=") and "SUMMARY" not in l][-1:]


# Differences between the document and the answers that the document cannot remove, by kind: what JSON Schema
# cannot say, or what depends on the data rather than on the request's shape. Anything else is a difference the
# document could state (graph-api's routes/declared_limits.rs), counted apart; ATTACK_STRICT_SCHEMA=1 fails on those.
NOT_THE_DOCUMENTS = {
    "whole_float": "an integer field sent as a whole float (`2.0`): JSON Schema counts it as an integer, serde "
                   "refuses it",
    "across_fields": "a rule across fields (`line_end` before `line_start`), which JSON Schema cannot compare",
    "data": "depends on the data, not on the request's shape (a relationship to a missing node, a `min_id` past "
            "the project's last stream ID)",
    "server_accepts_array": "the server takes a JSON array for an object body (serde reads a struct from a "
                            "sequence): the document is right, the server is lenient",
}


def classify(check, status, error_code, message, text):
    """Which of NOT_THE_DOCUMENTS a difference is, or "document" when the document could state it."""
    if check == "ST202" and error_code == "invalid_body" and re.search(r"invalid type: floating point `-?[0-9]+\.0`",
                                                                         message):
        return "whole_float"
    if check == "ST202" and error_code == "invalid_entity" and message.startswith("line_end: is before line_start"):
        return "across_fields"
    if check == "ST202" and error_code in ("dangling_relationship", "invalid_min_id"):
        return "data"
    if check == "ST201" and status == "200" and "in body - incorrect type" in text and "-d '[" in text:
        return "server_accepts_array"
    return "document"


def findings(junit_path):
    """The failures of a schemathesis JUnit report, one per test case and check: (operation, check, status,
    error code, message, kind), kind from `classify`."""
    import xml.etree.ElementTree as ET

    found = []
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        for failure in case.iter("failure"):
            for block in re.split(r"^\d+\. Test Case ID: ", failure.text or "", flags=re.M)[1:]:
                status = re.search(r"^\[(\d+)\]", block, flags=re.M)
                status = status.group(1) if status else ""
                err = re.search(r'^\s*`(\{"error":.*\})`\s*$', block, flags=re.M)
                try:
                    error = json.loads(err.group(1))["error"] if err else {}
                except ValueError:
                    error = {}
                code, message = error.get("code", ""), error.get("message", "")
                for check in re.findall(r"^- (ST\d+) ", block, flags=re.M):
                    kind = classify(check, status, code, message, block)
                    found.append((case.get("name"), check, status, code, message, kind))
    return found


def main():
    if not os.access(os.path.join(BIN_DIR, "graph-api"), os.X_OK):
        log(f"no graph-api in {BIN_DIR}: cargo build -p graph-api --bin graph-api")
        return 1
    work = tempfile.mkdtemp(prefix="attack-")
    stack = Stack(work)
    failures = []
    try:
        stack.start_api(scoped_env())
        status = stack.request("GET", f"/api/graph/stats?project={PROJECT}")[0]
        if status != 401:
            failures.append(f"a read without a token answered {status}, not 401")

        status, schema = stack.request("GET", "/openapi.json", TOKENS["all"])
        assert status == 200, f"/openapi.json answered {status}"
        spec = json.loads(schema)
        schema_file = os.path.join(work, "openapi.json")
        open(schema_file, "wb").write(schema)
        status, _ = stack.request("GET", "/openapi.json")
        if status != 401:
            failures.append(f"/openapi.json without a token answered {status}, not 401")
        if not spec.get("components", {}).get("securitySchemes"):
            failures.append("/openapi.json declares no security scheme")

        # (a) schemathesis: no 5xx anywhere (plus, once the document declares its security scheme, no route
        # that answers without a token).
        log("\n== (a) schemathesis: no 5xx")
        hard = "not_a_server_error"
        if spec.get("components", {}).get("securitySchemes"):
            hard += ",ignored_auth"
        rc, text, took = run_schemathesis(stack, work, schema_file, "server-errors", hard)
        log("\n".join(summary_of(text)))
        log(f"({took:.0f} s)")
        if rc != 0:
            failures.append(f"schemathesis ({hard}) failed: see the report above")
            log(text[-12000:])

        log("\n== (a) schemathesis: responses against the document")
        conformance = "status_code_conformance,content_type_conformance,response_schema_conformance," \
                      "response_headers_conformance,negative_data_rejection,positive_data_acceptance"
        rc, text, took = run_schemathesis(stack, work, schema_file, "conformance", conformance,
                                          ["--phases", "examples,coverage,fuzzing", "--continue-on-failure"])
        log("\n".join(summary_of(text)))
        log(f"({took:.0f} s; findings about the document: {'fail' if STRICT_SCHEMA else 'reported, not failed on'})")
        found = findings(os.path.join(work, "conformance.junit.xml")) if rc != 0 else []
        for operation, check, status, code, message, kind in sorted(found, key=lambda f: (f[5] != "document", f)):
            log(f"  {'DOCUMENT' if kind == 'document' else kind:20} {check} {operation}: answered {status} "
                f"{code} {message[:120]}")
        fixable = [f for f in found if f[5] == "document"]
        log(f"document/answer differences: {len(found)}; the document could state {len(fixable)}, "
            f"it cannot state {len(found) - len(fixable)}")
        for kind, why in NOT_THE_DOCUMENTS.items():
            n = sum(1 for f in found if f[5] == kind)
            if n:
                log(f"  {n} × {kind}: {why}")
        if rc != 0 and not found:
            failures.append("schemathesis' conformance run failed without a failure in its report")
        if STRICT_SCHEMA and fixable:
            failures.append(f"{len(fixable)} answer(s) differ from what the document could state")

        # (b) the write operations with the read-only token, no token, an unknown token: refused, nothing written.
        log("\n== (b) write operations without the write scope, from a foreign origin, not as JSON")
        seed_graph(stack)
        status, answer = stack.request("POST", f"/api/graph/query?project={PROJECT}", TOKENS["all"],
                                       {"statement": "RETURN 1"})
        ok = status == 503 and json.loads(answer)["error"]["code"] == "unavailable"
        if not ok:
            failures.append(f"/query without FalkorDB answered {status} {answer[:200]!r}, not 503 unavailable")
        log(f"  {'POST':6} {'/api/graph/query':36} {'no FalkorDB':14} → {status} {'ok' if ok else 'WRONG'}")
        job = json.loads(stack.request("POST", f"/api/graph/admin/reanalyze?project={PROJECT}", TOKENS["all"],
                                       {"path": "/tmp"})[1])["job_id"]
        ids = {"/api/graph/nodes/{id}": NODE_A, "/api/graph/relationships/{id}": REL,
               "/api/graph/admin/jobs/{id}/cancel": job}
        before = stack.state()
        tried = 0
        # Every state-changing method, with the scope its document declares: a read-scoped one (a POST that changes
        # nothing, such as /query) is not refused to the read token, everything else is checked the same.
        writes = [(m, p) for p, item in spec["paths"].items() for m in item if m in WRITE_METHODS]
        for method, template in sorted(writes):
            read_scoped = declared_scopes(spec["paths"][template][method]) == ["read"]
            path = template.replace("{id}", urllib.request.quote(ids.get(template, "x"), safe="")) + \
                f"?project={PROJECT}"
            body = BODIES.get((method, template))
            if body is None and method != "delete":
                body = {}
            attempts = [("read token", TOKENS["read"], body, {}, 403), ("no token", None, body, {}, 401),
                        ("unknown token", "attack-nobody", body, {}, 401),
                        ("foreign origin", TOKENS["all"], body, {"Origin": "https://attacker.example"}, 403)]
            if read_scoped:
                attempts = attempts[1:]
            if method == "post":
                attempts.append(("text/plain", TOKENS["all"], None, {"Content-Type": "text/plain"}, 415))
            if template == "/api/graph/admin/reset":
                attempts.append(("write token", TOKENS["write"], body, {}, 403))
            for who, token, sent, headers, expected in attempts:
                if sent is None and who == "text/plain":
                    status, answer = stack.request_raw(method, path, token, json.dumps(body or {}).encode(), headers)
                else:
                    status, answer = stack.request(method, path, token, sent, headers)
                tried += 1
                ok = status == expected
                if not ok:
                    failures.append(f"{method.upper()} {template} with the {who} answered {status}, not {expected}: "
                                    f"{answer[:200]!r}")
                log(f"  {method.upper():6} {template:36} {who:14} → {status} {'ok' if ok else 'WRONG'}")
        after = stack.state()
        if after != before:
            failures.append(f"refused writes changed Redis: {before} → {after}")
        log(f"  Redis before and after: {before['cdc_entries']} CDC entries, {before['nodes']} nodes, "
            f"{before['jobs']} jobs, digest {'unchanged' if after == before else 'CHANGED'}")
        # The reads still work with the read token (it was refused for its scope, not for being unknown).
        status, _ = stack.request("GET", f"/api/graph/nodes/{urllib.request.quote(NODE_A, safe='')}"
                                         f"?project={PROJECT}", TOKENS["read"])
        if status != 200:
            failures.append(f"the read token cannot read: {status}")
        # The check can fail: the same delete with a write-scoped token changes what was compared.
        status, _ = stack.request("DELETE", f"/api/graph/nodes/{urllib.request.quote(NODE_A, safe='')}"
                                            f"?project={PROJECT}", TOKENS["write"])
        changed = stack.state()
        if status != 200 or changed["digest"] == before["digest"] or changed["cdc_entries"] == before["cdc_entries"]:
            failures.append(f"the control delete with the write token did not write ({status}, {changed})")
        log(f"  control: DELETE with the write token → {status}, Redis changed: "
            f"{changed['digest'] != before['digest']}")

        # (c) summary.
        log("\n== summary")
        log(f"schemathesis: {len(spec['paths'])} paths of /openapi.json, {EXAMPLES} examples per operation, seed "
            f"{SEED}; write operations refused without the write scope: {len(writes)} operations, {tried} requests, "
            f"Redis unchanged: {after == before}")
    finally:
        stack.stop()
        if os.environ.get("ATTACK_KEEP") == "1":
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        log("\nFAILED:")
        for f in failures:
            log(f"  - {f}")
        log("attack: 0 passed, 1 failed")
        return 1
    log("attack: 1 passed, 0 failed")
    return 0


def seed_graph(stack):
    body = {"operations": [
        {"op": "upsert_node", "node": {"id": NODE_A, "kind": "file", "name": NODE_A, "file": NODE_A}},
        {"op": "upsert_node", "node": {"id": NODE_B, "kind": "function", "name": "target", "file": NODE_A}},
        {"op": "upsert_relationship", "relationship": {"type": "calls", "source": NODE_A, "target": NODE_B}},
    ]}
    status, answer = stack.request("POST", f"/api/graph/batch?project={PROJECT}", TOKENS["all"], body)
    assert status == 200, f"seeding the graph answered {status}: {answer[:300]!r}"


if __name__ == "__main__":
    sys.exit(main())
