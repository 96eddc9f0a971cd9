"""Gateway routing, streaming, usage capture and errors, against a mock upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.server.conftest import Stack

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "a b c d"}]}


async def _post(stack: Stack, path: str, body: Any, **kwargs: Any) -> tuple:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.base_url + path, data=data, **kwargs) as response,
    ):
        return response.status, response.headers.copy(), await response.read()


async def _stream(stack: Stack, path: str, body: dict) -> list[bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.base_url + path, json=body) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line.strip() async for line in response.content if line.strip()]


def _chunks(events: list[bytes]) -> list[dict]:
    assert events[-1] == b"data: [DONE]"
    return [orjson.loads(event[len(b"data: ") :]) for event in events[:-1]]


async def test_chat_whole_response_is_passed_through_and_metered(stack: Stack) -> None:
    status, headers, body = await _post(stack, "/v1/chat/completions", CHAT)

    assert status == 200
    data = orjson.loads(body)
    assert data["choices"][0]["message"]["content"].startswith("w0")
    record = stack.records.find(headers["x-request-id"])
    assert record is not None
    assert (record.status, record.model, record.is_stream) == (
        "ok",
        "mock-model",
        False,
    )
    usage = data["usage"]
    assert record.num_prompt_tokens == usage["prompt_tokens"] == 4
    assert record.num_completion_tokens == usage["completion_tokens"] == 16
    assert record.num_cached_tokens == 3
    assert record.finish_reason == "length"
    assert record.ttft_s is None
    assert record.duration_s is not None
    assert record.duration_s > 0
    # The upstream's key is added by the gateway; the client never sees it.
    assert stack.mock.stats.last_headers["Authorization"] == "Bearer upstream-key"


async def test_alias_reaches_the_model_under_a_gateway_request_id(
    stack: Stack,
) -> None:
    body = {**CHAT, "model": "mock-alias"}
    _, first, _ = await _post(stack, "/v1/chat/completions", body)
    status, second, _ = await _post(
        stack, "/v1/chat/completions", body, headers={"x-request-id": "abc-123"}
    )

    assert status == 200
    # A client's id could repeat (retries) and the ledger needs unique ones.
    assert second["x-request-id"] not in ("abc-123", first["x-request-id"])
    record = stack.records.find(second["x-request-id"])
    assert record is not None
    assert record.model == "mock-model"
    assert stack.mock.stats.last_headers["X-Request-Id"] == second["x-request-id"]


async def test_stream_without_usage_request_hides_usage(stack: Stack) -> None:
    events = await _stream(stack, "/v1/chat/completions", {**CHAT, "stream": True})

    chunks = _chunks(events)
    assert all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == (
        "".join(f" w{i}" for i in range(16))
    )
    options = stack.mock.stats.last_body["stream_options"]
    assert options == {"include_usage": True, "continuous_usage_stats": True}
    [record] = list(stack.records)
    assert (record.num_prompt_tokens, record.num_completion_tokens) == (4, 16)
    assert record.num_cached_tokens == 3
    assert record.ttft_s is not None
    assert record.duration_s is not None
    assert 0 < record.ttft_s <= record.duration_s


async def test_stream_with_include_usage_keeps_only_the_final_usage(
    stack: Stack,
) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = _chunks(await _stream(stack, "/v1/chat/completions", body))

    *content, final = chunks
    assert all("usage" not in chunk for chunk in content)
    assert final["choices"] == []
    assert final["usage"]["completion_tokens"] == 16
    assert final["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}


async def test_stream_with_continuous_usage_keeps_every_usage(stack: Stack) -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = {**CHAT, "stream": True, "stream_options": options}
    chunks = _chunks(await _stream(stack, "/v1/chat/completions", body))

    assert all("usage" in chunk for chunk in chunks)
    assert [c["usage"]["completion_tokens"] for c in chunks[:3]] == [0, 1, 2]


async def test_completions_stream_and_whole(stack: Stack) -> None:
    body = {"model": "mock-model", "prompt": "one two", "max_tokens": 5}
    status, _, raw = await _post(stack, "/v1/completions", body)
    assert status == 200
    assert orjson.loads(raw)["usage"]["completion_tokens"] == 5

    chunks = _chunks(await _stream(stack, "/v1/completions", {**body, "stream": True}))
    assert "".join(c["choices"][0]["text"] for c in chunks) == " w0 w1 w2 w3 w4"
    streamed = next(r for r in stack.records if r.is_stream)
    assert (streamed.endpoint, streamed.num_completion_tokens) == ("completions", 5)
    assert streamed.ttft_s is not None


async def test_client_disconnect_aborts_the_upstream_request(stack: Stack) -> None:
    stack.mock.token_delay_s = 0.05
    body = {**CHAT, "stream": True, "max_tokens": 200}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            stack.base_url + "/v1/chat/completions", json=body
        )
        for _ in range(4):
            await response.content.readline()
        response.close()

    for _ in range(100):
        if stack.mock.stats.num_aborted and list(stack.records):
            break
        await asyncio.sleep(0.05)
    assert stack.mock.stats.num_aborted == 1
    [record] = list(stack.records)
    assert record.status == "aborted"
    assert record.num_prompt_tokens == 4
    assert record.num_completion_tokens is not None
    assert 0 < record.num_completion_tokens < 200


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_body"),
        (b'{"messages": []}', "model", "invalid_model"),
        (b'{"model": 7}', "model", "invalid_model"),
        (b'{"model": "mock-model", "stream": "yes"}', "stream", None),
        (b'{"model": "mock-model", "stream_options": 1}', "stream_options", None),
    ],
)
async def test_malformed_bodies_are_400_in_openai_shape(
    stack: Stack, body: bytes, param: str | None, code: str | None
) -> None:
    status, headers, raw = await _post(stack, "/v1/chat/completions", body)

    assert status == 400
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert headers["x-request-id"]
    assert stack.mock.stats.num_requests == 0


async def test_unknown_model_is_404(stack: Stack) -> None:
    status, _, raw = await _post(stack, "/v1/chat/completions", {**CHAT, "model": "x"})

    assert status == 404
    error = orjson.loads(raw)["error"]
    assert error["code"] == "model_not_found"
    assert "'x'" in error["message"]


async def test_model_whose_engine_is_not_ready_is_503(stack: Stack) -> None:
    body = {**CHAT, "model": "down-model"}
    status, headers, raw = await _post(stack, "/v1/chat/completions", body)

    assert status == 503
    assert headers["retry-after"] == "5"
    assert orjson.loads(raw)["error"]["code"] == "engine_not_ready"


async def test_upstream_error_passes_through_and_is_recorded(stack: Stack) -> None:
    # The mock fails every request for the model it knows as "fail".
    upstream = stack.engines.resolve("mock-model")
    assert upstream is not None
    upstream.served_model = "fail"

    status, headers, raw = await _post(stack, "/v1/chat/completions", CHAT)

    assert status == 400
    assert orjson.loads(raw)["error"]["message"] == "mock failure"
    record = stack.records.find(headers["x-request-id"])
    assert record is not None
    assert (record.status, record.http_status) == ("error", 400)
    assert record.error_message == "mock failure"


async def test_engine_dying_mid_stream_ends_with_an_error_event(stack: Stack) -> None:
    upstream = stack.engines.resolve("mock-model")
    assert upstream is not None
    upstream.served_model = "die-mid-stream"

    events = await _stream(stack, "/v1/chat/completions", {**CHAT, "stream": True})

    assert events[-1] != b"data: [DONE]"
    error = orjson.loads(events[-1][len(b"data: ") :])["error"]
    assert error["code"] == "engine_error"
    [record] = list(stack.records)
    assert (record.status, record.http_status) == ("error", 502)
    assert record.num_completion_tokens == 2


async def test_health_ready_models_and_unknown_routes(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(stack.base_url + "/health") as response:
            assert response.status == 200
        async with session.get(stack.base_url + "/ready") as response:
            assert response.status == 503
            states = (await response.json())["models"]
            assert states == {"mock-model": "ready", "down-model": "unreachable"}
        async with session.get(stack.base_url + "/v1/models") as response:
            ids = [m["id"] for m in (await response.json())["data"]]
            assert ids == ["mock-model", "mock-alias", "down-model"]
        async with session.get(stack.base_url + "/v1/nothing") as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "not_found_error"
