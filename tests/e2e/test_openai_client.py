"""The official `openai` client against the real gateway and a real vLLM engine."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request

import openai
import orjson
import pytest

from tests.e2e.conftest import QUESTION, Gateway
from tests.processes import is_running

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="unused")


def _record(gateway: Gateway, request_id: str) -> dict:
    return gateway.ledger_rows()[request_id]


def test_models_lists_the_default_model_and_its_alias(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["smollm2-135m", "smollm2"]


def test_chat_answers_and_usage_is_captured(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2-135m", messages=QUESTION, max_tokens=16, temperature=0
    )
    completion = raw.parse()

    assert "Paris" in (completion.choices[0].message.content or "")
    record = _record(gateway, raw.headers["x-request-id"])
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert record["status"] == "ok"
    assert record["num_prompt_tokens"] == usage.prompt_tokens
    assert record["num_completion_tokens"] == usage.completion_tokens
    assert record["num_cached_tokens"] == usage.prompt_tokens_details.cached_tokens


def test_completions_through_an_alias(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.completions.with_raw_response.create(
        model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0
    )
    completion = raw.parse()

    assert "Paris" in completion.choices[0].text
    record = _record(gateway, raw.headers["x-request-id"])
    assert record["model"] == "smollm2-135m"
    assert completion.usage is not None
    assert record["num_completion_tokens"] == completion.usage.completion_tokens == 4


def test_stream_without_usage_is_metered_all_the_same(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="smollm2-135m",
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        stream=True,
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "Paris" in text
    record = _record(gateway, request_id)
    assert record["is_stream"]
    assert record["num_completion_tokens"] == len(chunks) - 1  # the role-only chunk
    assert record["num_prompt_tokens"] > 0
    assert 0 < record["ttft_s"] <= record["duration_s"]


def test_stream_with_include_usage_matches_the_record(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="smollm2-135m",
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())

    *content, final = chunks
    assert all(chunk.usage is None for chunk in content)
    assert final.choices == []
    assert final.usage is not None
    record = _record(gateway, request_id)
    assert record["num_prompt_tokens"] == final.usage.prompt_tokens
    assert record["num_completion_tokens"] == final.usage.completion_tokens
    assert final.usage.prompt_tokens_details is not None
    assert (
        record["num_cached_tokens"] == final.usage.prompt_tokens_details.cached_tokens
    )


def test_aborted_stream_is_recorded_with_the_tokens_so_far(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="smollm2-135m",
        messages=QUESTION,
        max_tokens=500,
        stream=True,
        extra_body={"ignore_eos": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        stream = response.parse()
        for _ in range(5):
            next(stream)

    deadline = time.monotonic() + 10
    while request_id not in gateway.ledger_rows() and time.monotonic() < deadline:
        time.sleep(0.1)
    record = _record(gateway, request_id)
    assert record["status"] == "aborted"
    assert 3 <= record["num_completion_tokens"] < 500


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nothing", messages=QUESTION)
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_engine_rejections_pass_through_as_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="smollm2-135m", messages=QUESTION, max_tokens=100_000
        )


def test_malformed_json_is_400(gateway: Gateway) -> None:
    request = urllib.request.Request(
        gateway.base_url + "/v1/chat/completions",
        data=b'{"model": "smollm2-135m", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert orjson.loads(info.value.read())["error"]["code"] == "invalid_json"


@pytest.mark.kills_gateway
def test_no_engine_survives_a_killed_gateway(gateway: Gateway) -> None:
    engine_pids = gateway.engine_pids()
    assert engine_pids, "the gateway should have an engine running"

    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [pid for pid in engine_pids if is_running(pid)]
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, f"engine processes {alive} outlived the gateway"
