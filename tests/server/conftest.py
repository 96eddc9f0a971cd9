"""Fixtures: an in-process mock upstream and a gateway in front of it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from aiohttp import web

from bench.mock_server import MockServer
from server.config import parse_models
from server.engines import Engines
from server.gateway import create_app
from server.records import RecentRequests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    mock: MockServer
    records: RecentRequests
    engines: Engines
    base_url: str


@pytest.fixture
async def mock_server() -> AsyncIterator[tuple[MockServer, str]]:
    mock = MockServer(token_delay_s=0.0, cached_tokens=3, api_key="upstream-key")
    runner = web.AppRunner(mock.app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield mock, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


@pytest.fixture
async def stack(
    mock_server: tuple[MockServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    mock, url = mock_server
    monkeypatch.setenv("MOCK_KEY", "upstream-key")
    models = parse_models(
        {
            "models": [
                {
                    "name": "mock-model",
                    "aliases": ["mock-alias"],
                    "endpoint": {"url": url, "api_key_env": "MOCK_KEY"},
                },
                {
                    "name": "down-model",
                    "endpoint": {"url": "http://127.0.0.1:9/v1"},
                },
            ]
        }
    )
    engines = Engines(models, {}, tmp_path / "logs")
    records = RecentRequests()
    app = create_app(engines, records)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    for _ in range(200):
        if engines.statuses()[0].state == "ready":
            break
        await asyncio.sleep(0.01)
    yield Stack(mock, records, engines, f"http://127.0.0.1:{port}")
    server.should_exit = True
    await task
