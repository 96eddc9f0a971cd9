"""A closed-loop load generator for OpenAI-compatible completion endpoints.

`concurrency` workers share one aiohttp session; each sends its next request as soon
as its previous one finishes, until a request count is reached or a duration has
passed (requests in flight then finish and count). Warm-up requests run first, at
the same concurrency, and are left out of every number.

Per request it keeps what vLLM's own benchmark keeps: TTFT is the time to the first
chunk that carries text (a role-only first chunk does not count), latency is the
time to the end of the response, output tokens come from `usage` when the server
sends it and are otherwise the number of text chunks, and ITLs are the gaps between
text chunks. The request body is encoded once; per chunk the client does one
`orjson.loads`, so that the client stays far cheaper than what it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

# Streams from a slow engine can take minutes; a stuck one should still end.
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
_MAX_ERROR_MESSAGES = 5


@dataclass(frozen=True)
class Workload:
    """One kind of request, sent over and over."""

    url: str
    model: str
    prompt: str = "Say hello."
    max_tokens: int = 16
    is_stream: bool = False
    is_chat: bool = True
    api_key: str | None = None
    # Usage in the stream's last chunk: exact token counts, as vLLM's benchmark asks.
    include_usage: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        if self.is_chat:
            body["messages"] = [{"role": "user", "content": self.prompt}]
        else:
            body["prompt"] = self.prompt
        if self.is_stream:
            body["stream"] = True
            if self.include_usage:
                body["stream_options"] = {"include_usage": True}
        return orjson.dumps({**body, **self.extra_body})

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass
class RequestResult:
    """What one request did; times in seconds from its start."""

    is_ok: bool = False
    ttft_s: float | None = None
    latency_s: float = 0.0
    num_output_tokens: int = 0
    num_chunks: int = 0
    itl_s: list[float] = field(default_factory=list)
    error: str | None = None
    # "http_429", "timeout", "connection", "invalid_response", "incomplete_stream"
    error_kind: str | None = None
    # From `usage`, when the server sends it; None otherwise.
    num_prompt_tokens: int | None = None
    num_cached_tokens: int | None = None


@dataclass
class LoadResult:
    """Throughput and latency of one run; None where a value is not measured."""

    concurrency: int
    duration_s: float
    num_requests: int
    num_errors: int
    requests_per_s: float
    output_tokens_per_s: float
    chunks_per_s: float
    ttft_median_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    itl_median_s: float | None
    latency_median_s: float | None
    latency_p90_s: float | None
    latency_p99_s: float | None
    error_messages: list[str]

    @classmethod
    def from_requests(
        cls, results: list[RequestResult], concurrency: int, duration_s: float
    ) -> LoadResult:
        ok = [r for r in results if r.is_ok]
        ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
        itls = sorted(itl for r in ok for itl in r.itl_s)
        latencies = sorted(r.latency_s for r in ok)
        errors = [r.error or "unknown error" for r in results if not r.is_ok]
        per_s = 1 / duration_s if duration_s > 0 else 0.0
        return cls(
            concurrency=concurrency,
            duration_s=duration_s,
            num_requests=len(results),
            num_errors=len(errors),
            requests_per_s=len(ok) * per_s,
            output_tokens_per_s=sum(r.num_output_tokens for r in ok) * per_s,
            chunks_per_s=sum(r.num_chunks for r in ok) * per_s,
            ttft_median_s=percentile(ttfts, 50),
            ttft_p90_s=percentile(ttfts, 90),
            ttft_p99_s=percentile(ttfts, 99),
            itl_median_s=percentile(itls, 50),
            latency_median_s=percentile(latencies, 50),
            latency_p90_s=percentile(latencies, 90),
            latency_p99_s=percentile(latencies, 99),
            error_messages=sorted(set(errors))[:_MAX_ERROR_MESSAGES],
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile, interpolated like numpy's default; None when empty."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (
        rank - low
    )


class LoadGenerator:
    """One client session for many runs, so that connections stay open between
    them; `async with LoadGenerator() as generator: await generator.run(...)`."""

    def __init__(self, max_connections: int = 0) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=_TIMEOUT,
            auto_decompress=False,
            read_bufsize=2**18,
            skip_auto_headers=("User-Agent",),
        )

    async def __aenter__(self) -> LoadGenerator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()

    def sender(self, workload: Workload) -> RequestSender:
        """A sender of `workload`'s requests (or other bodies) on this session."""
        return RequestSender(self._session, workload)

    async def run(
        self,
        workload: Workload,
        concurrency: int,
        num_requests: int | None = None,
        duration_s: float | None = None,
        num_warmup: int = 0,
        on_start: Callable[[], object] | None = None,
    ) -> LoadResult:
        """Drive `workload` with `concurrency` closed-loop clients and measure it.

        Give `num_requests` or `duration_s`. `on_start` is called after the
        warm-up, just before timing starts: the moment to take a snapshot of
        whatever is measured alongside (CPU time, engine metrics).
        """
        if (num_requests is None) == (duration_s is None):
            raise ValueError("give exactly one of num_requests and duration_s")
        sender = RequestSender(self._session, workload)
        if num_warmup:
            await sender.run(concurrency, num_warmup, None)
        if on_start is not None:
            on_start()
        started = time.perf_counter()
        results = await sender.run(concurrency, num_requests, duration_s)
        elapsed_s = time.perf_counter() - started
        return LoadResult.from_requests(results, concurrency, elapsed_s)


async def run_load(
    workload: Workload,
    concurrency: int,
    num_requests: int | None = None,
    duration_s: float | None = None,
    num_warmup: int = 0,
    on_start: Callable[[], object] | None = None,
) -> LoadResult:
    """One run of `LoadGenerator.run` in a session of its own."""
    async with LoadGenerator(max_connections=concurrency) as generator:
        return await generator.run(
            workload, concurrency, num_requests, duration_s, num_warmup, on_start
        )


class RequestSender:
    """Sends requests to `workload`'s URL with its headers and measures each."""

    def __init__(self, session: aiohttp.ClientSession, workload: Workload) -> None:
        self._session = session
        self._workload = workload
        self._body = workload.body()
        self._headers = workload.headers()
        self._text_key = "content" if workload.is_chat else "text"

    async def run(
        self, concurrency: int, num_requests: int | None, duration_s: float | None
    ) -> list[RequestResult]:
        results: list[RequestResult] = []
        deadline = time.perf_counter() + duration_s if duration_s else None
        num_left = num_requests

        async def worker() -> None:
            nonlocal num_left
            while True:
                if num_left is not None:
                    if num_left <= 0:
                        return
                    num_left -= 1
                elif deadline is not None and time.perf_counter() >= deadline:
                    return
                results.append(await self.send())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results

    async def send(self, body: bytes | None = None) -> RequestResult:
        """Send `body` (by default the workload's own) and measure the response."""
        result = RequestResult()
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._workload.url,
                data=self._body if body is None else body,
                headers=self._headers,
            ) as response:
                if response.status != 200:
                    text = (await response.read())[:200].decode(errors="replace")
                    result.error = f"HTTP {response.status}: {text}"
                    result.error_kind = f"http_{response.status}"
                elif self._workload.is_stream:
                    await self._read_stream(response, result, started)
                else:
                    data = orjson.loads(await response.read())
                    usage = data.get("usage") or {}
                    result.num_output_tokens = int(usage.get("completion_tokens", 0))
                    _read_prompt_usage(usage, result)
                    result.is_ok = True
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.error_kind = _error_kind(exc)
        result.latency_s = time.perf_counter() - started
        return result

    async def _read_stream(
        self, response: aiohttp.ClientResponse, result: RequestResult, started: float
    ) -> None:
        buffer = b""
        last_token_at: float | None = None
        num_usage_tokens: int | None = None
        is_done = False
        # One read often holds several events; they arrived together, so they share
        # one timestamp, and reading in bulk keeps the client's cost per chunk low.
        # Events end with a blank line, "\n\n" from vLLM and every proxy here.
        async for data in response.content.iter_any():
            now = time.perf_counter()
            *events, buffer = (buffer + data).split(b"\n\n")
            for event in events:
                if not event.startswith(b"data:"):
                    continue
                payload = event[5:].strip()
                if payload == b"[DONE]":
                    is_done = True
                    continue
                chunk = orjson.loads(payload)
                if usage := chunk.get("usage"):
                    num_usage_tokens = usage.get("completion_tokens")
                    _read_prompt_usage(usage, result)
                choices = chunk.get("choices")
                if not choices or not _text_of(choices[0], self._text_key):
                    continue
                result.num_chunks += 1
                if last_token_at is None:
                    result.ttft_s = now - started
                else:
                    result.itl_s.append(now - last_token_at)
                last_token_at = now
        result.num_output_tokens = (
            num_usage_tokens if num_usage_tokens is not None else result.num_chunks
        )
        result.is_ok = is_done
        if not is_done:
            result.error = "stream ended without [DONE]"
            result.error_kind = "incomplete_stream"


def _read_prompt_usage(usage: dict[str, Any], result: RequestResult) -> None:
    if (num_prompt := usage.get("prompt_tokens")) is not None:
        result.num_prompt_tokens = int(num_prompt)
    details = usage.get("prompt_tokens_details") or {}
    if (num_cached := details.get("cached_tokens")) is not None:
        result.num_cached_tokens = int(num_cached)


def _error_kind(exc: Exception) -> str:
    # aiohttp's timeouts are ClientErrors too, so timeouts are checked first.
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientPayloadError | ValueError):
        return "invalid_response"
    return "connection"


def _text_of(choice: dict[str, Any], key: str) -> str | None:
    if key == "content":
        return (choice.get("delta") or {}).get("content")
    return choice.get("text")
