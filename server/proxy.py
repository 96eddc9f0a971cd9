"""Forwarding one OpenAI request to its upstream, and recording what it cost.

Bodies are parsed once (orjson) to find the model and the stream flags; a whole
response is parsed for its usage; a stream is relayed event by event as it arrives,
with usage reporting switched on upstream and removed again where the client did
not ask for it.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.errors import ApiError
from server.keys import KeyInfo
from server.records import RequestRecord, RequestSink
from server.stream_relay import StreamRelay
from server.upstream import Upstream

logger = logging.getLogger(__name__)

# Returns the upstream serving a model name, None when no model has that name, and
# raises ApiError(503) when the model exists but cannot take requests now.
Resolver = Callable[[str], Upstream | None]
# Returns the caller's key (None in open mode) or raises ApiError(401).
Identifier = Callable[[Request], Awaitable[KeyInfo | None]]

_MAX_TAG_CHARS = 64


@dataclass
class ParsedRequest:
    body: dict[str, Any]
    model: str
    is_stream: bool
    wants_usage: bool
    wants_continuous_usage: bool


def parse_body(raw: bytes) -> ParsedRequest:
    """Validate the parts of an OpenAI request body the gateway relies on."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            f"the request body must be a JSON object, not {type(body).__name__}",
            code="invalid_body",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(
            400,
            "'model' must be a non-empty string naming a model from GET /v1/models",
            param="model",
            code="invalid_model",
        )
    is_stream = body.get("stream", False)
    if not isinstance(is_stream, bool) and is_stream is not None:
        raise ApiError(
            400, f"'stream' must be true or false, not {is_stream!r}", param="stream"
        )
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(
            400,
            f"'stream_options' must be an object, not {options!r}",
            param="stream_options",
        )
    options = options or {}
    return ParsedRequest(
        body=body,
        model=model,
        is_stream=bool(is_stream),
        wants_usage=options.get("include_usage") is True,
        wants_continuous_usage=options.get("continuous_usage_stats") is True,
    )


# A random prefix per process and a counter: unique across restarts (the ledger
# requires it) without a uuid4's system call per request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A new request id. A client's own `x-request-id` is not reused: the ledger
    needs ids unique across clients, and a client's retry would collide."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


class Proxy:
    """Forwards completion requests and hands each record to the sink."""

    def __init__(
        self, resolve: Resolver, sink: RequestSink, identify: Identifier | None = None
    ) -> None:
        self._resolve = resolve
        self._sink = sink
        self._identify = identify

    async def forward(self, request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        try:
            key = await self._identify(request) if self._identify else None
            parsed = parse_body(await request.body())
            upstream = self._resolve(parsed.model)
            if upstream is None:
                raise ApiError(
                    404,
                    f"model {parsed.model!r} does not exist; GET /v1/models lists "
                    "the models served here",
                    param="model",
                    code="model_not_found",
                )
        except ApiError as exc:
            return exc.response(request_id)

        record = RequestRecord(
            request_id=request_id,
            model=upstream.name,
            endpoint=endpoint,
            is_stream=parsed.is_stream,
            key_name=key.name if key else None,
            tag=_tag(request, parsed.body),
            user=_text(parsed.body.get("user")),
        )
        payload = self._upstream_payload(parsed, upstream)
        headers = {**upstream.headers, "X-Request-Id": request_id}
        try:
            response = await upstream.session.post(
                upstream.url(endpoint), data=payload, headers=headers
            )
        except (aiohttp.ClientError, OSError) as exc:
            error = ApiError(
                502,
                f"the engine for model {upstream.name!r} did not answer: {exc!r}",
                code="engine_unreachable",
            )
            await self._finish(record, started, error=error)
            return error.response(request_id)

        if parsed.is_stream and response.status == 200:
            return StreamRelay(
                response,
                record,
                self._sink,
                started=started,
                wants_usage=parsed.wants_usage,
                wants_continuous_usage=parsed.wants_continuous_usage,
            )
        return await self._whole(response, record, started)

    async def _whole(
        self, response: aiohttp.ClientResponse, record: RequestRecord, started: float
    ) -> Response:
        try:
            content = await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            error = ApiError(
                502,
                f"the engine for model {record.model!r} broke off: {exc!r}",
                code="engine_error",
            )
            await self._finish(record, started, error=error)
            return error.response(record.request_id)
        finally:
            response.release()
        record.http_status = response.status
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = {}
        if response.status == 200 and isinstance(data, dict):
            record.apply_usage(data.get("usage") or {})
            choices = data.get("choices") or [{}]
            record.finish_reason = choices[0].get("finish_reason")
            await self._finish(record, started)
        else:
            message = _error_message(data) or content[:200].decode(errors="replace")
            await self._finish(
                record, started, error=ApiError(response.status, message)
            )
        headers = {
            "x-request-id": record.request_id,
            "x-tokenmill-cost-usd": format_cost(record.list_cost_usd),
        }
        return Response(
            content,
            response.status,
            headers,
            media_type=response.headers.get("Content-Type", "application/json"),
        )

    async def _finish(
        self, record: RequestRecord, started: float, error: ApiError | None = None
    ) -> None:
        record.duration_s = time.perf_counter() - started
        if error is not None:
            record.status = "error"
            record.http_status = error.status
            record.error_message = error.message
        await self._sink.submit(record)

    @staticmethod
    def _upstream_payload(parsed: ParsedRequest, upstream: Upstream) -> bytes:
        body = parsed.body
        if upstream.served_model:
            body["model"] = upstream.served_model
        if parsed.is_stream:
            # Continuous stats put the running token counts in every chunk, so an
            # aborted stream is still metered with what the engine produced.
            body["stream_options"] = {
                **(body.get("stream_options") or {}),
                "include_usage": True,
                "continuous_usage_stats": True,
            }
        return orjson.dumps(body)


def format_cost(cost_usd: float | None) -> str:
    """A cost for a header: plain decimal dollars, or `unknown`."""
    if cost_usd is None:
        return "unknown"
    return f"{cost_usd:.10f}".rstrip("0").rstrip(".")


def _text(value: Any, max_chars: int = _MAX_TAG_CHARS) -> str | None:
    return value[:max_chars] if isinstance(value, str) and value else None


def _tag(request: Request, body: dict[str, Any]) -> str | None:
    """The query type: `X-Tokenmill-Tag`, else `metadata.tag` in the body."""
    if tag := _text(request.headers.get("x-tokenmill-tag")):
        return tag
    metadata = body.get("metadata")
    return _text(metadata.get("tag")) if isinstance(metadata, dict) else None


def _error_message(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        return str(message) if message else None
    return None
