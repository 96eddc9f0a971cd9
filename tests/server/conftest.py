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
from fastapi import FastAPI

from bench.mock_server import MockServer
from server.auth import Authenticator
from server.config import ModelsFile, parse_models
from server.engines import Engines
from server.gateway import create_app
from server.keys import KeyStore
from server.ledger import Ledger
from server.metering import Meter
from server.metrics import GatewayMetrics
from server.price_table import PriceTable
from server.records import RecentRequests
from server.sampler import Sampler
from server.telemetry import PsutilSource


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


@dataclass
class MeteredStack(Stack):
    ledger: Ledger
    keys: KeyStore
    meter: Meter


async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _wait_ready(engines: Engines) -> None:
    for _ in range(200):
        if engines.statuses()[0].state == "ready":
            return
        await asyncio.sleep(0.01)


def _mock_models(url: str, **extra: object) -> ModelsFile:
    return parse_models(
        {
            "models": [
                {
                    "name": "mock-model",
                    "aliases": ["mock-alias"],
                    "endpoint": {"url": url, "api_key_env": "MOCK_KEY"},
                    **extra,
                },
                {
                    "name": "down-model",
                    "endpoint": {"url": "http://127.0.0.1:9/v1"},
                },
            ]
        }
    )


@pytest.fixture
async def stack(
    mock_server: tuple[MockServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    mock, url = mock_server
    monkeypatch.setenv("MOCK_KEY", "upstream-key")
    engines = Engines(_mock_models(url), {}, tmp_path / "logs")
    records = RecentRequests()
    async for base_url in _serve(create_app(engines, records)):
        await _wait_ready(engines)
        yield Stack(mock, records, engines, base_url)


@pytest.fixture
async def metered(
    mock_server: tuple[MockServer, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MeteredStack]:
    """The gateway with its ledger, keys and prices, as `tokenmill serve` has it."""
    mock, url = mock_server
    monkeypatch.setenv("MOCK_KEY", "upstream-key")
    models = _mock_models(
        url,
        hardware={"name": "test-box", "usd_per_hour": 3.6},
        prices={"input_usd_per_mtok": 1.0, "cached_input_usd_per_mtok": 0.5,
                "output_usd_per_mtok": 4.0},
        api_reference="openai/gpt-4o-mini",
    )  # fmt: skip
    engines = Engines(models, {}, tmp_path / "logs")
    database = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger.open(database)
    keys = KeyStore.open(database, refresh_interval_s=0.0)
    records = RecentRequests()
    meter = Meter(
        models, tmp_path, PriceTable.load(), GatewayMetrics(), ledger, also=records
    )
    sampler = Sampler(PsutilSource(), interval_s=0.05)
    app = create_app(
        engines, meter, auth=Authenticator(keys), meter=meter, sampler=sampler
    )
    async for base_url in _serve(app):
        await _wait_ready(engines)
        yield MeteredStack(mock, records, engines, base_url, ledger, keys, meter)
    keys.close()
