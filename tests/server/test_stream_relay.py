"""The relay: single SSE lines (usage, finish, the fast path) and whole reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from server import stream_relay
from server.records import RecentRequests, RequestRecord
from server.stream_relay import StreamRelay


def _relay(wants_usage: bool = False, ttft_seen: bool = True) -> StreamRelay:
    record = RequestRecord("r1", "m", "chat/completions", is_stream=True)
    if ttft_seen:
        record.ttft_s = 0.1
    return StreamRelay(
        None,  # type: ignore[arg-type]  # lines are fed by hand
        record,
        RecentRequests(),
        started=0.0,
        wants_usage=wants_usage,
        wants_continuous_usage=False,
    )


def _event(relay: StreamRelay, chunk: bytes) -> dict[str, Any]:
    event = relay._on_line(b"data: " + chunk + b"\n")
    assert event is not None
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    return dict(orjson.loads(event[6:]))


USAGE = b'"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}'


@pytest.mark.parametrize(
    "chunk",
    [
        # vLLM's layout: the fast path.
        b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"},'
        b'"finish_reason":null}],' + USAGE + b"}",
        # Usage not last: the full parse.
        b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"},'
        b'"finish_reason":null}],' + USAGE + b',"system_fingerprint":"f"}',
        # Spaces after colons (another server): the full parse.
        b'{"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}, '
        b'"finish_reason": null}], "usage": {"prompt_tokens": 5, '
        b'"completion_tokens": 3, "total_tokens": 8}}',
    ],
)
def test_token_chunks_are_metered_and_stripped(chunk: bytes) -> None:
    relay = _relay()

    sent = _event(relay, chunk)

    assert "usage" not in sent
    assert sent["choices"][0]["delta"] == {"content": "x"}
    assert relay._record.num_prompt_tokens == 5
    assert relay._record.num_completion_tokens == 3


def test_a_finished_choice_beside_an_open_one_is_seen() -> None:
    relay = _relay()
    chunk = (
        b'{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"},'
        b'{"index":1,"delta":{"content":"y"},"finish_reason":null}],' + USAGE + b"}"
    )

    _event(relay, chunk)

    assert relay._record.finish_reason == "stop"


def test_error_chunks_are_recorded() -> None:
    relay = _relay()
    chunk = b'{"error":{"message":"boom","type":"x","code":500}}'

    assert _event(relay, chunk)["error"]["message"] == "boom"
    assert relay._record.status == "error"
    assert relay._record.error_message == "boom"


def test_the_usage_only_chunk_is_held_back() -> None:
    relay = _relay(wants_usage=True)
    chunk = b'{"id":"c","choices":[],' + USAGE + b',"system_fingerprint":"f"}'

    assert relay._on_line(b"data: " + chunk + b"\n") is None
    assert relay._usage_chunk is not None
    assert relay._usage_chunk["usage"]["total_tokens"] == 8


TOKEN = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"},'
    b'"finish_reason":null}],' + USAGE + b"}\n\n"
)
STRIPPED = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"},'
STRIPPED += b'"finish_reason":null}]}\n\n'


def test_what_arrives_together_leaves_together_and_a_cut_event_waits() -> None:
    relay = _relay()
    cut = len(TOKEN) // 2

    body, pending = relay._on_data(TOKEN + TOKEN + TOKEN[:cut])
    assert (body, pending) == (STRIPPED + STRIPPED, TOKEN[:cut].rstrip(b"\n"))

    body, pending = relay._on_data(pending + TOKEN[cut:])
    assert (body, pending) == (STRIPPED, b"")


def test_crlf_line_endings_and_the_done_marker() -> None:
    relay = _relay()
    body, pending = relay._on_data(
        TOKEN.replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    )
    assert (body, pending) == (STRIPPED, b"")


def test_other_fields_and_comments_pass_as_whole_events() -> None:
    relay = _relay()
    body, pending = relay._on_data(b': ping\n\nevent: note\ndata: {"x":1}\n\n')
    assert body == b': ping\n\nevent: note\ndata: {"x":1}\n\n'
    assert pending == b""


class _Content:
    """aiohttp's response content as the relay reads it: what arrived, read by read."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = list(reads)

    async def readany(self) -> bytes:
        return self._reads.pop(0) if self._reads else b""


class _Upstream:
    def __init__(self, reads: list[bytes]) -> None:
        self.content = _Content(reads)


async def _relayed(reads: list[bytes]) -> tuple[StreamRelay, bytes]:
    relay = _relay()
    relay._upstream = _Upstream(reads)  # type: ignore[assignment]
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["body"])

    await relay._relay(send)
    return relay, b"".join(sent)


async def test_events_cut_between_reads_and_a_last_one_without_its_blank_line() -> None:
    cut = len(TOKEN) // 3
    _, body = await _relayed([TOKEN[:cut], TOKEN[cut:] + TOKEN, TOKEN.rstrip(b"\n")])
    assert body == STRIPPED * 3 + b"data: [DONE]\n\n"


async def test_an_event_past_the_size_limit_is_an_error_not_a_growing_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_relay, "MAX_EVENT_BYTES", 64)
    relay, body = await _relayed([TOKEN, b"data: " + b"x" * 100, b"y" * 100])
    assert body.startswith(STRIPPED + b"data: {")
    assert b"without its blank line" in body
    assert not body.endswith(b"[DONE]\n\n")
    assert (relay._record.status, relay._record.http_status) == ("error", 502)
