"""The mock server on a thread of its own, for code that runs its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web

from bench.mock_server import MockServer
from tests.server.conftest import free_port


@contextlib.contextmanager
def mock_in_thread(mock: MockServer) -> Iterator[str]:
    """Serve `mock` on a loopback port from a background thread; yield its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(mock.app())
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
