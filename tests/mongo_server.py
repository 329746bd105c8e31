"""A real MongoDB wire-protocol server for the tests: SecantusDB (GPL-2.0, a test-only
dependency, never shipped), started on a free loopback port, in memory."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

READY_ATTEMPTS = 60  # pings, each waiting up to 0.5 s for the server to answer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> str | None:
    beside = Path(sys.executable).parent / "secantusd-py"  # the venv's own, first
    return str(beside) if beside.exists() else shutil.which("secantusd-py")


@contextlib.contextmanager
def secantus_server(log_path: Path) -> Iterator[str]:
    """Yields the server's URI; raises RuntimeError, saying why, if it cannot start."""
    executable = _executable()
    if executable is None:
        raise RuntimeError("secantusd-py is not installed (pip install -e '.[test]')")
    port = _free_port()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [executable, "--host", "127.0.0.1", "--port", str(port),
             "--storage-path", ":memory:", "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        uri = f"mongodb://127.0.0.1:{port}"
        client: MongoClient[dict[str, object]] = MongoClient(
            uri, serverSelectionTimeoutMS=500, directConnection=True)
        try:
            for _ in range(READY_ATTEMPTS):
                if server.poll() is not None:
                    break
                try:
                    client.admin.command("ping")
                    break
                except PyMongoError:
                    continue
            else:
                raise RuntimeError(f"SecantusDB did not answer on port {port}")
        finally:
            client.close()
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise RuntimeError(f"SecantusDB exited with {server.returncode}: {tail}")
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
