#!/usr/bin/env python3
"""Save -> WebSocket frame: the server side of issue 15's save -> dashboard figure, without nginx or a browser.
Starts redis-server, graph-api, ws-gateway and analysis-worker (debug binaries), watches a temp Python repo,
appends a function N times, and times file write -> frame with the node_added at a WebSocket client."""
import asyncio, json, os, socket, subprocess, sys, tempfile, time, urllib.request
try:
    import websockets
except ImportError:
    raise SystemExit("needs the websockets package: pip install websockets")
# Usage: scripts/bench/save_to_frame.py [BIN_DIR (default target/debug)] [EDITS (default 20)]
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../target/debug")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait(url, t=30):
    end = time.time() + t
    while time.time() < end:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200: return
        except Exception: pass
        time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")
work = tempfile.mkdtemp(); repo = os.path.join(work, "repo"); os.makedirs(os.path.join(repo, "app"))
for i in range(25):
    open(os.path.join(repo, "app", f"m{i}.py"), "w").write(f"def f{i}():\n    return {i}\n")
rp, ap, gp, wp = port(), port(), port(), port()
procs = [subprocess.Popen(["redis-server", "--port", str(rp), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)]
time.sleep(0.3)
env = dict(os.environ, CODEGRAPH__REDIS__URL=f"redis://127.0.0.1:{rp}", CODEGRAPH__AUTH__ALLOW_OPEN="true",
           CODEGRAPH__ANALYSIS__ALLOWED_ROOTS=work, CODEGRAPH_CONFIG_DIR="/nonexistent", CODEGRAPH__TELEMETRY__LOG_LEVEL="warn")
for name, p in (("graph-api", ap), ("ws-gateway", gp), ("analysis-worker", wp)):
    procs.append(subprocess.Popen([f"{BIN}/{name}"], env=dict(env, CODEGRAPH__HTTP__ADDR=f"127.0.0.1:{p}"), stderr=subprocess.DEVNULL))
try:
    for p in (ap, gp, wp): wait(f"http://127.0.0.1:{p}/ready")
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{gp}/ws/events?project=demo", max_size=None) as ws:
            req = urllib.request.Request(f"http://127.0.0.1:{ap}/api/graph/admin/watch?project=demo", method="POST",
                data=json.dumps({"path": repo}).encode(), headers={"content-type": "application/json"})
            urllib.request.urlopen(req)
            # wait for the first analysis to complete
            while True:
                m = json.loads(await ws.recv())
                if m.get("type") == "analysis_completed": break
            lat = []
            for i in range(N):
                await asyncio.sleep(0.3)
                name = f"added_{i}"
                t0 = time.monotonic()
                with open(os.path.join(repo, "app", "m0.py"), "a") as f: f.write(f"\n\ndef {name}():\n    return {i}\n")
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if any(c.get("type") == "node_added" and c["entity"]["id"].endswith(":" + name) for c in m.get("changes", [])):
                        lat.append((time.monotonic() - t0) * 1000); break
            lat.sort()
            print("save -> frame (ms):", [round(x) for x in lat])
            print(f"p50 {lat[len(lat)//2]:.0f} ms, p99(max) {lat[-1]:.0f} ms")
    asyncio.run(main())
finally:
    for p in procs: p.kill()
