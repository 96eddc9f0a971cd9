"""The gate's greedy answers: what it asks the engine, against a local fake engine."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quantize import gate
from server.config import ModelConfig
from server.upstream import Upstream
from tests.server.conftest import free_port


async def test_greedy_answers_are_asked_after_the_system_message() -> None:
    received: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"choices": [{"message": {"content": " Paris. "}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    upstream = Upstream(
        ModelConfig.model_validate({"name": "m", "source": "x"}),
        f"http://127.0.0.1:{port}/v1",
        api_key=None,
    )
    try:
        answer = await gate._greedy_answer(
            upstream, "What is the capital of France?", gate.GateSettings()
        )
    finally:
        await upstream.close()
        await runner.cleanup()

    assert answer == "Paris."
    (body,) = received
    assert body["temperature"] == 0
    assert body["messages"] == [
        {"role": "system", "content": gate.GREEDY_SYSTEM_PROMPT},
        {"role": "user", "content": "What is the capital of France?"},
    ]
