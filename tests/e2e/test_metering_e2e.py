"""The ledger against the real engine: tokens one for one, totals against vLLM's."""

from __future__ import annotations

import re
import time
import urllib.request

import openai
import pytest

from tests.e2e.conftest import Gateway

pytestmark = pytest.mark.e2e

# Long enough to fill whole KV-cache blocks, so a repeat is served from the cache.
SHARED_PREFIX = " ".join(f"Rule {i}: answer briefly and politely." for i in range(80))


def _engine_counters(gateway: Gateway) -> dict[str, float]:
    url = gateway.base_url + "/metrics/engines/smollm2-135m"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    counters = {}
    for name in ("prompt_tokens", "generation_tokens", "prefix_cache_hits"):
        values = re.findall(rf"^vllm:{name}_total\{{[^}}]*\}} (\S+)$", text, re.M)
        counters[name] = sum(map(float, values))
    return counters


def _settled_counters(gateway: Gateway) -> dict[str, float]:
    """vLLM updates its counters as outputs are processed: wait for them to settle."""
    previous = _engine_counters(gateway)
    while True:
        time.sleep(0.5)
        current = _engine_counters(gateway)
        if current == previous:
            return current
        previous = current


def test_ledger_matches_the_engine_one_for_one_and_in_total(
    gateway: Gateway,
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused")
    before = _settled_counters(gateway)
    reported: dict[str, tuple[int, int, int]] = {}
    aborted: list[str] = []

    def remember(raw: object, usage: object) -> None:
        headers = raw.headers  # type: ignore[attr-defined]
        details = usage.prompt_tokens_details  # type: ignore[attr-defined]
        reported[headers["x-request-id"]] = (
            usage.prompt_tokens,  # type: ignore[attr-defined]
            details.cached_tokens if details else 0,
            usage.completion_tokens,  # type: ignore[attr-defined]
        )

    for question in ("Name a colour.", "Name a fruit."):  # the second hits the cache
        messages = [
            {"role": "system", "content": SHARED_PREFIX},
            {"role": "user", "content": question},
        ]
        raw = client.chat.completions.with_raw_response.create(
            model="smollm2-135m", messages=messages, max_tokens=8, temperature=0
        )
        remember(raw, raw.parse().usage)
    raw_completion = client.completions.with_raw_response.create(
        model="smollm2-135m", prompt="Once upon a time", max_tokens=10
    )
    remember(raw_completion, raw_completion.parse().usage)
    with client.chat.completions.with_streaming_response.create(
        model="smollm2-135m",
        messages=[{"role": "system", "content": SHARED_PREFIX},
                  {"role": "user", "content": "Name a tree."}],
        max_tokens=8, stream=True, stream_options={"include_usage": True},
    ) as response:  # fmt: skip
        *_, final = list(response.parse())
        remember(response, final.usage)
    with client.chat.completions.with_streaming_response.create(
        model="smollm2-135m", messages=[{"role": "user", "content": "Count."}],
        max_tokens=400, stream=True, extra_body={"ignore_eos": True},
    ) as response:  # fmt: skip
        aborted.append(response.headers["x-request-id"])
        stream = response.parse()
        for _ in range(10):
            next(stream)

    after = _settled_counters(gateway)
    rows = gateway.ledger_rows()
    for request_id, (prompt, cached, completion) in reported.items():
        row = rows[request_id]
        assert row["status"] == "ok"
        assert (
            row["num_prompt_tokens"],
            row["num_cached_tokens"],
            row["num_completion_tokens"],
        ) == (prompt, cached, completion)
    assert max(cached for _, cached, _ in reported.values()) > 0, "no cache hit"
    assert rows[aborted[0]]["status"] == "aborted"

    mix = [rows[request_id] for request_id in [*reported, *aborted]]
    assert after["prompt_tokens"] - before["prompt_tokens"] == sum(
        r["num_prompt_tokens"] for r in mix
    )
    assert after["generation_tokens"] - before["generation_tokens"] == sum(
        r["num_completion_tokens"] for r in mix
    )
    assert after["prefix_cache_hits"] - before["prefix_cache_hits"] == sum(
        r["num_cached_tokens"] or 0 for r in mix
    )
