"""Issue #11's hostile payloads against `flowloom serve` on loopback, /health probed
beside each. Prints a table.

    python bench/bench_hostile.py [--repeat 1]

A probe thread sends GET /health every 10 ms for the whole run. For each
payload (tests/hostile_corpus.py) it reports how long its node ran before it failed, how
many /health answers came while the request was open, and the slowest of them; the
baseline is the probe on an idle server, in the same run. Targets from the issue: the
node fails within 1 s, /health answers within 100 ms. Last, the server's RSS growth.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.table import print_table
from tests.hostile_corpus import PAYLOADS
from tests.servers import Server

PROBE_EVERY_S = 0.01  # between one answer and the next request


class Probe:
    """GET /health every 10 ms; each answer's latency, stamped with when it ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, float]] = []  # (ended at, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.wait(PROBE_EVERY_S):
                start = time.perf_counter()
                client.get(f"{self.url}/health").raise_for_status()
                end = time.perf_counter()
                self.samples.append((end, end - start))

    def between(self, start: float, end: float) -> list[float]:
        """Latencies of the answers that ended within [start, end], and of the first
        one after (it was waiting while the payload ran)."""
        for _ in range(1000):  # until the probe has answered once after `end`
            if self.samples and self.samples[-1][0] > end:
                break
            time.sleep(0.01)
        inside = [s for at, s in self.samples if start <= at <= end]
        after = [s for at, s in self.samples if at > end][:1]
        return inside + after

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def rss_mb(server: Server) -> float:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp)).start()
        try:
            rows = measure(server, args.repeat)
        finally:
            server.kill()
    print_table(rows)


def measure(server: Server, repeat: int) -> list[tuple[str, str, str]]:
    warm = {"workflow": {"nodes": [{"id": "a", "type": "transform", "config": {
        "output": "{{ 1 + 1 }}"}}]}, "mode": "sync"}
    httpx.post(f"{server.url}/execute", json=warm, timeout=60).raise_for_status()
    first_rss = rss_mb(server)
    rows: list[tuple[str, str, str]] = []
    with Probe(server.url) as probe:
        time.sleep(1.0)
        idle_end = time.perf_counter()
        idle = probe.between(idle_end - 1.0, idle_end)
        rows.append(("/health on an idle server: answers in 1 s, slowest",
                     f"{len(idle)}, {max(idle) * 1000:.1f} ms", "baseline"))
        for payload in PAYLOADS:
            took, lags, answers = [], [], []
            for _ in range(repeat):
                start = time.perf_counter()
                run = httpx.post(f"{server.url}/execute", timeout=120, json={
                    "workflow": payload.document(), "inputs": payload.inputs,
                    "mode": "sync"}).json()
                end = time.perf_counter()
                assert run["status"] == "failed" and payload.expect in run["errors"][0][
                    "message"], run["errors"]
                during = probe.between(start, end)
                took.append(run["node_states"]["evil"]["latency_ms"] / 1000)
                lags.append(max(during))
                answers.append(len(during))
            slowest = max(lags)
            rows.append((f"{payload.name}: node fails in, /health answers, slowest",
                         f"{statistics.median(took):.2f} s, {min(answers)}, "
                         f"{slowest * 1000:.0f} ms ({slowest / max(idle):.0f}x)",
                         "< 1 s, < 100 ms"))
    rows.append(("server RSS growth over all payloads", f"{rss_mb(server) - first_rss:.0f} MB",
                 "bounded (the issue saw 3 GB)"))
    return rows


if __name__ == "__main__":
    main()
