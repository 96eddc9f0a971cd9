"""A gateway killed with SIGKILL under load loses no row of a completed response."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from tests.server.conftest import free_port


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process died while starting"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} was not ready in {timeout_s} s")


async def _load(base_url: str, completed: list[str], stop: asyncio.Event) -> None:
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "x"}]}

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.post(
                    base_url + "/v1/chat/completions", json=body
                ) as answer:
                    await answer.read()
                    if answer.status == 200:
                        # The whole body arrived: this response was completed.
                        completed.append(answer.headers["x-request-id"])
            except (aiohttp.ClientError, OSError):
                return

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(16)))


def test_sigkill_under_load_loses_no_completed_response(tmp_path: Path) -> None:
    mock_port, gateway_port = free_port(), free_port()
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n  - name: mock-model\n"
        f"    endpoint: {{url: 'http://127.0.0.1:{mock_port}/v1'}}\n"
    )
    mock = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_server", "--port", str(mock_port)]
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--config", str(config),
         "--home", str(tmp_path / "home"), "--port", str(gateway_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base_url = f"http://127.0.0.1:{gateway_port}"
        _wait_for(f"http://127.0.0.1:{mock_port}/health", mock, 20)
        _wait_for(base_url + "/ready", gateway, 30)

        async def run() -> list[str]:
            completed: list[str] = []
            stop = asyncio.Event()
            load = asyncio.create_task(_load(base_url, completed, stop))
            while len(completed) < 300:
                await asyncio.sleep(0.01)
            os.kill(gateway.pid, signal.SIGKILL)
            stop.set()
            await load
            return completed

        completed = asyncio.run(run())
        gateway.wait()
    finally:
        for process in (gateway, mock):
            process.kill()
            process.wait()

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'ledger.sqlite3'}")
    with engine.connect() as conn:
        ids = {
            row[0] for row in conn.execute(sa.text("select request_id from requests"))
        }
    engine.dispose()
    missing = set(completed) - ids
    assert len(completed) >= 300
    assert not missing, f"{len(missing)} completed responses are not in the ledger"
