"""What the gateway learns about each request, and where it hands that over.

The proxy fills one `RequestRecord` per request — streaming or not, completed,
failed or aborted — and awaits `RequestSink.submit` before the last byte of the
response goes out, so a sink that persists can promise that every response a
client received whole is on record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import orjson

logger = logging.getLogger(__name__)

Status = Literal["ok", "error", "aborted"]


@dataclass
class RequestRecord:
    """One request's usage and timing, as seen at the gateway."""

    request_id: str
    model: str
    endpoint: str
    is_stream: bool
    started_at: float = field(default_factory=time.time)
    status: Status = "ok"
    http_status: int = 200
    finish_reason: str | None = None
    num_prompt_tokens: int | None = None
    num_cached_tokens: int | None = None
    num_completion_tokens: int | None = None
    # Time to the first generated token; streams only: a whole response has none.
    ttft_s: float | None = None
    duration_s: float | None = None
    error_message: str | None = None
    # Who asked and why: the API key's name (never the key), the query type from
    # `X-Tokenmill-Tag` or `metadata.tag`, and OpenAI's `user` field.
    key_name: str | None = None
    tag: str | None = None
    user: str | None = None
    # Priced by server.pricing; None means unknown, never a guess.
    list_cost_usd: float | None = None
    api_equivalent_cost_usd: float | None = None
    # Calibrated engine-seconds this request used: the weight for absorbed cost.
    work_s: float | None = None

    def apply_usage(self, usage: dict[str, Any]) -> None:
        """Take token counts from an OpenAI `usage` object."""
        if (prompt := usage.get("prompt_tokens")) is not None:
            self.num_prompt_tokens = int(prompt)
        if (completion := usage.get("completion_tokens")) is not None:
            self.num_completion_tokens = int(completion)
        details = usage.get("prompt_tokens_details") or {}
        if (cached := details.get("cached_tokens")) is not None:
            self.num_cached_tokens = int(cached)

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar, so a shallow copy is the whole record, and far
        # cheaper per request than dataclasses.asdict's deep copy.
        return dict(vars(self))


class RequestSink(Protocol):
    """Receives each finished request's record."""

    async def submit(self, record: RequestRecord) -> None: ...


class RecentRequests:
    """The last `maxlen` records in memory, newest last."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)

    async def submit(self, record: RequestRecord) -> None:
        self._records.append(record)

    def find(self, request_id: str) -> RequestRecord | None:
        for record in reversed(self._records):
            if record.request_id == request_id:
                return record
        return None

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self._records))


class JsonlRequestLog:
    """Appends each record as a JSON line: a request log for humans and scripts.

    Lines are written and flushed in the calling task; the OS buffers them, which is
    durable against a crashed gateway though not against a crashed machine.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self._lock = asyncio.Lock()

    async def submit(self, record: RequestRecord) -> None:
        line = orjson.dumps(record.to_dict()) + b"\n"
        async with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        self._file.close()
