"""Relaying a server-sent-event stream from an engine to a client, chunk by chunk.

A raw ASGI response rather than Starlette's StreamingResponse, because the relay
must know for certain when the client went away: it watches `receive()` for the
disconnect, closes the upstream connection at once (vLLM then aborts the request)
and records the request as aborted with the tokens counted so far.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.errors import error_body
from server.records import RequestRecord, RequestSink

logger = logging.getLogger(__name__)

_DONE = b"data: [DONE]\n\n"
# An upstream event longer than this is refused rather than buffered without end.
MAX_EVENT_BYTES = 2**20


class EventTooLarge(Exception):
    """The upstream sent more than MAX_EVENT_BYTES without ending an event."""

    def __init__(self, num_bytes: int) -> None:
        super().__init__(
            f"an event of over {num_bytes} bytes without its blank line; the relay "
            f"takes events of at most {MAX_EVENT_BYTES} bytes"
        )


class StreamRelay(Response):
    """An ASGI response that streams one upstream SSE response to the client."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        record: RequestRecord,
        sink: RequestSink,
        started: float,
        wants_usage: bool,
        wants_continuous_usage: bool,
    ) -> None:
        # Response's own __init__ would add a Content-Length; a stream has none.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", record.request_id.encode()),
        ]
        self._upstream = upstream
        self._record = record
        self._sink = sink
        self._started = started
        self._wants_usage = wants_usage or wants_continuous_usage
        self._strips_usage = not wants_continuous_usage
        self._usage_chunk: dict[str, Any] | None = None
        self._is_submitted = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": self.raw_headers,
                }
            )
            # A disconnect cancels the relay; the task group then exits quietly.
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
                await self._relay(send)
                tasks.cancel_scope.cancel()
        except OSError:
            # The server could not send: the client is gone, as with a disconnect.
            pass
        except Exception as exc:
            logger.exception("relaying request %s failed", self._record.request_id)
            self._record.status = "error"
            self._record.http_status = 500
            self._record.error_message = repr(exc)
            raise
        finally:
            # Closing (not releasing) drops the connection, which is how vLLM
            # learns that nobody is listening and aborts the request.
            self._upstream.close()
            if not self._is_submitted:
                if self._record.status == "ok":
                    self._record.status = "aborted"
                    self._record.http_status = 499
                with anyio.CancelScope(shield=True):
                    await self._submit()

    async def _relay(self, send: Send) -> None:
        content = self._upstream.content
        pending = b""
        while True:
            try:
                # What has arrived, at once: an event is never held for the next.
                data = await content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                await send(self._upstream_failed(exc))
                break
            if not data:
                break
            body, pending = self._on_data(pending + data if pending else data)
            if len(pending) > MAX_EVENT_BYTES:
                await send(self._upstream_failed(EventTooLarge(len(pending))))
                pending = b""
                break
            if body:
                await send(
                    {"type": "http.response.body", "body": body, "more_body": True}
                )
        if pending.strip() and (event := self._on_event(pending)):
            # A stream that ended without the blank line after its last event.
            await send({"type": "http.response.body", "body": event, "more_body": True})

        # The record is committed before the last bytes leave (see records.py).
        await self._submit()
        tail = b""
        if self._usage_chunk is not None and self._wants_usage:
            # The cost rides in the usage object: a stream's headers left long ago.
            usage = self._usage_chunk["usage"]
            usage["tokenmill_cost_usd"] = self._record.list_cost_usd
            tail += b"data: " + orjson.dumps(self._usage_chunk) + b"\n\n"
        if self._record.status == "ok":
            tail += _DONE
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _upstream_failed(self, exc: Exception) -> dict[str, Any]:
        """Record the engine's failure; the SSE error event that tells the client."""
        message = f"the engine broke off the stream: {exc!r}"
        self._record.status = "error"
        self._record.http_status = 502
        self._record.error_message = message
        body = error_body(message, "upstream_error", code="engine_error")
        return {
            "type": "http.response.body",
            "body": b"data: " + body + b"\n\n",
            "more_body": True,
        }

    def _on_data(self, data: bytes) -> tuple[bytes, bytes]:
        """The bytes to send for the whole events in `data`, and its unfinished tail.

        One read usually holds exactly one event (one token of one request), so
        this, not a line at a time, is what the relay pays per token.
        """
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        *events, pending = data.split(b"\n\n")
        sent = [event for event in map(self._on_event, events) if event is not None]
        return b"".join(sent), pending

    def _on_event(self, event: bytes) -> bytes | None:
        """The bytes to send the client for one upstream event, or None."""
        if b"\n" not in event and event.startswith(b"data:"):
            return self._on_line(event)
        # Other fields (`event:`, `id:`), comments, several lines: line by line.
        lines = [line for line in map(self._on_line, event.split(b"\n")) if line]
        if not lines:
            return None
        joined = b"".join(lines)
        return joined if joined.endswith(b"\n\n") else joined + b"\n"

    def _on_line(self, line: bytes) -> bytes | None:
        """The event to send the client for one upstream line, or None."""
        if not line.startswith(b"data:"):
            # Blank separators are re-added per event; keep comments and others.
            return line + b"\n" if line.strip() else None
        data = line[5:].strip()
        if data == b"[DONE]":
            return None
        if self._record.ttft_s is not None and (event := self._token_chunk(data)):
            return event
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b"data: " + data + b"\n\n"
        if not isinstance(chunk, dict):
            return b"data: " + data + b"\n\n"
        return self._on_chunk(chunk, data)

    def _token_chunk(self, data: bytes) -> bytes | None:
        """The fast path for the many mid-stream token chunks, or None to parse.

        Parsing and re-serializing every chunk was most of the relay's cost per
        token. vLLM writes a token chunk as `{…,"choices":[…],"usage":{…}}`: only
        the running usage is needed, and it is the last key. Anything else — a
        finish, an error, the usage-only chunk, another server's layout — does not
        match exactly and takes the full parse.
        """
        num_choices = data.count(b'"finish_reason":')
        if not num_choices or data.count(b'"finish_reason":null') != num_choices:
            return None
        start = data.rfind(b',"usage":{')
        if start < 0 or not data.endswith(b"}}"):
            return None
        try:
            usage = orjson.loads(data[start + 9 : -1])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(usage, dict):
            return None
        self._record.apply_usage(usage)
        if self._strips_usage:
            data = data[:start] + b"}"
        return b"data: " + data + b"\n\n"

    def _on_chunk(self, chunk: dict[str, Any], data: bytes) -> bytes | None:
        record = self._record
        if isinstance(chunk.get("error"), dict):
            record.status = "error"
            record.http_status = int(chunk["error"].get("code") or 500)
            record.error_message = str(chunk["error"].get("message"))
            return b"data: " + data + b"\n\n"
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            record.apply_usage(usage)
        choices = chunk.get("choices") or []
        if not choices and usage is not None:
            # The trailing usage-only chunk: held back until the record is in.
            self._usage_chunk = chunk
            return None
        for choice in choices:
            if record.ttft_s is None and _has_token(choice):
                record.ttft_s = time.perf_counter() - self._started
            if choice.get("finish_reason"):
                record.finish_reason = choice["finish_reason"]
        if self._strips_usage and "usage" in chunk:
            del chunk["usage"]
            data = orjson.dumps(chunk)
        return b"data: " + data + b"\n\n"

    async def _submit(self) -> None:
        self._is_submitted = True
        self._record.duration_s = time.perf_counter() - self._started
        await self._sink.submit(self._record)


def _has_token(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta") or {}
    return bool(
        delta.get("content")
        or delta.get("reasoning_content")
        or delta.get("reasoning")
        or delta.get("tool_calls")
    )


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
