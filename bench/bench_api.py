"""Load on `flowloom serve` (embedded store) from wrk, a separate process on loopback.

    python bench/bench_api.py [--seconds 10] [--connections 16]

Sync executions of a 5-node transform workflow, then async submissions of it. Needs
`wrk` (Debian: apt-get install wrk). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import print_table
from tests.servers import free_port

WORKFLOW = {
    "id": "bench", "nodes": [
        {"id": "n0", "type": "transform", "config": {"output": "{{ inputs.x }}"}},
        *({"id": f"n{i}", "type": "transform",
           "config": {"output": f"{{{{ outputs.n{i - 1} + 1 }}}}"}} for i in range(1, 5))],
    "edges": [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, 5)],
}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, body: dict, seconds: int, connections: int, folder: Path) -> dict:
    script = folder / "post.lua"
    script.write_text(LUA.format(body=json.dumps(body)))
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True
                         ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {p: _ms(v, u) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rate": rate, "p50": pct["50"], "p99": pct["99"],
            "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_api needs wrk on the PATH (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        env = {**os.environ, "FLOWLOOM_STORE": f"sqlite:///{folder / 'api.db'}",
               "FLOWLOOM_WORKERS": os.environ.get("FLOWLOOM_WORKERS", "8")}
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port",
                                   str(port), "--processes", str(args.processes)],
                                  env=env, cwd=folder,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            httpx.post(f"{base}/workflows", json=WORKFLOW).raise_for_status()
            url = f"{base}/workflows/bench/execute"
            check = httpx.post(url, json={"inputs": {"x": 1}}).json()
            assert check["output"] == 5, check
            sync = run_wrk(url, {"inputs": {"x": 1}}, args.seconds, args.connections, folder)
            queued = run_wrk(url, {"inputs": {"x": 1}, "mode": "async"}, args.seconds,
                             args.connections, folder)
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = [
        ("sync executions of a 5-node workflow", f"{sync['rate']:.0f}/s", ">= 200/s"),
        ("  p50 latency", f"{sync['p50']:.1f} ms", ""),
        ("  p99 latency", f"{sync['p99']:.1f} ms", "< 100 ms"),
        ("  non-2xx answers", str(sync["errors"]), "0"),
        ("async submissions", f"{queued['rate']:.0f}/s", ">= 1,000/s"),
        ("  p50 latency", f"{queued['p50']:.1f} ms", ""),
        ("  p99 latency", f"{queued['p99']:.1f} ms", ""),
        ("  non-2xx answers", str(queued["errors"]), "0"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
