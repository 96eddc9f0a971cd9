"""Metering through the gateway: prices, ledger rows, keys, feedback and metrics."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
import pytest

from tests.server.conftest import MeteredStack

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "a b c d"}]}
# The mock counts 4 prompt tokens, 3 of them cached, and 16 completion tokens.
# List: (1 x $1.00 + 3 x $0.50 + 16 x $4.00) / 1e6 = $0.0000665.
LIST_COST_USD = 66.5e-6
# gpt-4o-mini: (1 x $0.15 + 3 x $0.075 + 16 x $0.60) / 1e6 = $0.000009975.
API_COST_USD = 9.975e-6


async def _call(
    stack: MeteredStack,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, stack.base_url + path, data=data, headers=headers
        ) as response,
    ):
        raw = await response.read()
        payload = orjson.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
        return response.status, response.headers.copy(), payload


async def _rows(stack: MeteredStack) -> dict[str, dict]:
    return {row["request_id"]: row for row in await stack.ledger.fetch_requests()}


async def test_whole_response_is_priced_and_committed(metered: MeteredStack) -> None:
    status, headers, _ = await _call(
        metered, "POST", "/v1/chat/completions", {**CHAT, "user": "u-7"},
        headers={"X-Tokenmill-Tag": "support-faq"},
    )  # fmt: skip

    assert status == 200
    assert headers["x-tokenmill-cost-usd"] == "0.0000665"
    # Committed before the response was sent: no waiting needed.
    row = (await _rows(metered))[headers["x-request-id"]]
    assert row["list_cost_usd"] == pytest.approx(LIST_COST_USD)
    assert row["api_equivalent_cost_usd"] == pytest.approx(API_COST_USD)
    assert (row["num_prompt_tokens"], row["num_cached_tokens"]) == (4, 3)
    assert row["num_completion_tokens"] == 16
    assert (row["tag"], row["user"], row["key_name"]) == ("support-faq", "u-7", None)
    assert row["status"] == "ok"


async def test_stream_carries_its_cost_in_the_usage_chunk(
    metered: MeteredStack,
) -> None:
    body = {
        **CHAT,
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"tag": "chat"},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(metered.base_url + "/v1/chat/completions", json=body) as answer,
    ):
        request_id = answer.headers["x-request-id"]
        events = [line async for line in answer.content if line.strip()]

    usage = orjson.loads(events[-2][len(b"data: ") :])["usage"]
    assert usage["tokenmill_cost_usd"] == pytest.approx(LIST_COST_USD)
    row = (await _rows(metered))[request_id]
    assert row["tag"] == "chat"
    assert row["is_stream"]
    assert row["ttft_s"] is not None


async def test_aborted_stream_is_a_row_with_its_tokens(metered: MeteredStack) -> None:
    metered.mock.token_delay_s = 0.05
    body = {**CHAT, "stream": True, "max_tokens": 200}
    async with aiohttp.ClientSession() as session:
        answer = await session.post(
            metered.base_url + "/v1/chat/completions", json=body
        )
        request_id = answer.headers["x-request-id"]
        for _ in range(4):
            await answer.content.readline()
        answer.close()

    for _ in range(100):
        if request_id in await _rows(metered):
            break
        await asyncio.sleep(0.05)
    row = (await _rows(metered))[request_id]
    assert row["status"] == "aborted"
    assert 0 < row["num_completion_tokens"] < 200
    assert row["list_cost_usd"] > 0


async def test_keys_close_the_gateway_and_name_each_row(
    metered: MeteredStack,
) -> None:
    team_key = metered.keys.create("team-a")
    admin_key = metered.keys.create("ops", admin=True)

    status, _, body = await _call(metered, "POST", "/v1/chat/completions", CHAT)
    assert status == 401
    assert body["error"]["code"] == "missing_api_key"
    status, _, body = await _call(
        metered, "POST", "/v1/chat/completions", CHAT, key="tm-wrong"
    )
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")

    status, headers, _ = await _call(
        metered, "POST", "/v1/chat/completions", CHAT, key=team_key
    )
    assert status == 200
    assert (await _rows(metered))[headers["x-request-id"]]["key_name"] == "team-a"
    await _call(metered, "POST", "/v1/chat/completions", CHAT, key=admin_key)

    _, _, own = await _call(metered, "GET", "/v1/usage?group_by=key", key=team_key)
    assert [row["group"]["key"] for row in own["data"]] == ["team-a"]
    _, _, everyone = await _call(
        metered, "GET", "/v1/usage?group_by=key", key=admin_key
    )
    assert [row["group"]["key"] for row in everyone["data"]] == ["ops", "team-a"]

    status, _, body = await _call(metered, "GET", "/metrics", key=team_key)
    assert (status, body["error"]["code"]) == (403, "admin_required")
    status, _, _ = await _call(metered, "GET", "/metrics", key=admin_key)
    assert status == 200


async def test_feedback_makes_cost_per_successful_request(
    metered: MeteredStack,
) -> None:
    ids = []
    for _ in range(4):
        _, headers, _ = await _call(metered, "POST", "/v1/chat/completions", CHAT)
        ids.append(headers["x-request-id"])
    for request_id, outcome in zip(
        ids, ["success", "success", "failure"], strict=False
    ):
        status, _, _ = await _call(
            metered, "POST", "/v1/feedback",
            {"request_id": request_id, "outcome": outcome},
        )  # fmt: skip
        assert status == 200

    _, _, report = await _call(metered, "GET", "/v1/usage?group_by=model")
    [row] = report["data"]
    assert (row["success_basis"], row["num_successful"]) == ("feedback", 2)
    assert row["list_cost_usd"] == pytest.approx(4 * LIST_COST_USD)
    assert row["cache_hit_rate"] == pytest.approx(0.75)
    # Cache savings at list prices: 4 requests x 3 cached x ($1.00 - $0.50) / 1e6.
    assert row["cache_savings_usd"] == pytest.approx(4 * 3 * 0.5e-6)

    status, _, body = await _call(
        metered, "POST", "/v1/feedback", {"request_id": "nope", "outcome": "success"}
    )
    assert (status, body["error"]["code"]) == (404, "request_not_found")
    status, _, body = await _call(
        metered, "POST", "/v1/feedback", {"request_id": ids[0], "outcome": "meh"}
    )
    assert (status, body["error"]["param"]) == (400, "outcome")


async def test_prometheus_counters_match_the_ledger(metered: MeteredStack) -> None:
    for tag in ("a", "a", "b"):
        await _call(
            metered, "POST", "/v1/chat/completions", CHAT,
            headers={"X-Tokenmill-Tag": tag},
        )  # fmt: skip

    _, _, text = await _call(metered, "GET", "/metrics")
    rows = list((await _rows(metered)).values())

    def total(name: str) -> float:
        pattern = rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))

    assert total("tokenmill_prompt_tokens_total") == sum(
        r["num_prompt_tokens"] for r in rows
    )
    assert total("tokenmill_completion_tokens_total") == 48
    assert total("tokenmill_cached_tokens_total") == 9
    assert total("tokenmill_cost_usd_total") == pytest.approx(3 * LIST_COST_USD)
    assert total("tokenmill_api_equivalent_cost_usd_total") == pytest.approx(
        3 * API_COST_USD
    )
    assert 'tag="a"' in text
    assert "sk-" not in text
    assert 'tokenmill_device_memory_total_bytes{device="cpu",index="0"' in text


async def test_usage_report_rejects_bad_arguments(metered: MeteredStack) -> None:
    status, _, body = await _call(metered, "GET", "/v1/usage?group_by=colour")
    assert status == 400
    assert "cannot group by 'colour'" in body["error"]["message"]
    status, _, body = await _call(metered, "GET", "/v1/usage?start=yesterday")
    assert status == 400
    assert "cannot read the time 'yesterday'" in body["error"]["message"]
