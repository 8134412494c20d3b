"""Shared fixtures: a real kaon server (core/dist) started once per session.

Tests marked `server` drive that server. While core lacks a service a test needs, the
server answers UNIMPLEMENTED and the test is skipped with the method named; with
KAON_REQUIRE_SERVER=1 (set by CI once the engine lands) such a test fails instead.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SDK_SRC = REPO / "sdk-python" / "src"
CORE_MAIN = REPO / "core" / "dist" / "cli" / "main.js"
REQUIRE_SERVER = os.environ.get("KAON_REQUIRE_SERVER") == "1"

if str(SDK_SRC) not in sys.path:
    sys.path.insert(0, str(SDK_SRC))

import kaon  # noqa: E402


@dataclass
class Server:
    """A running kaon server."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    grpc: str
    token: str

    def connect(self) -> kaon.Client:
        return kaon.connect(self.grpc, self.token)


def _missing(reason: str) -> None:
    if REQUIRE_SERVER:
        pytest.fail(f"KAON_REQUIRE_SERVER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    node = shutil.which("node")
    if node is None or not CORE_MAIN.is_file():
        _missing(f"no built core ({CORE_MAIN}); run `npx tsc -b` in {REPO}")
    data_dir = Path(tempfile.mkdtemp(prefix="kaon-py-test-"))
    process = subprocess.Popen(
        [
            str(node),
            str(CORE_MAIN),
            "server",
            "--data-dir",
            str(data_dir),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KAON_HOME": str(data_dir), "KAON_LOG_LEVEL": "info"},
    )
    assert process.stdout is not None
    log: list[str] = []
    deadline = time.monotonic() + 30
    # The server logs "kaon server listening" once server.json is written: wait for that line.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            process.kill()
            pytest.fail("kaon server did not start:\n" + "".join(log))
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            continue
        line = process.stdout.readline().decode("utf-8", "replace")
        log.append(line)
        if "listening" in line:
            break

    # Keep draining the log so the server never blocks on a full pipe.
    def drain() -> None:
        for raw in process.stdout or []:
            log.append(raw.decode("utf-8", "replace"))

    threading.Thread(target=drain, daemon=True).start()
    info = json.loads((data_dir / "server.json").read_text())
    token = (data_dir / "admin.token").read_text().strip()
    yield Server(process, data_dir, info["grpc"], token)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[kaon.Client]:
    with server.connect() as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    except kaon.UnimplementedError as error:
        if item.get_closest_marker("server") is None or REQUIRE_SERVER:
            raise
        raise pytest.skip.Exception(
            f"core does not implement it yet: {error}", _use_item_location=True
        ) from None
