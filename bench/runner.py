"""Driving one benchmark point: a closed loop at a fixed concurrency, or an open
loop of Poisson arrivals at a request rate.

Closed loop (`concurrency`): that many clients each send their next request when
the previous one ends, so the server sets the pace. Open loop (`request_rate`):
requests arrive at exponentially distributed intervals with mean 1 / rate, whether
or not earlier ones have finished, optionally capped at `max_concurrency` in flight
(an arrival then waits for a slot, as in vLLM's benchmark); a rate of inf sends all
requests at once. Either way warm-up requests run first, closed-loop at the point's
concurrency (or 1 for an open loop), and are left out; the point's duration runs
from its first measured request to its last response.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bench.loadgen import LoadGenerator, RequestResult, RequestSender
from bench.loadgen import Workload as EndpointWorkload
from bench.workloads import Workload

Profile = Literal["concurrency", "rate"]


@dataclass(frozen=True)
class Target:
    """An OpenAI-compatible endpoint and how to call it."""

    base_url: str
    model: str
    api_key: str | None = None
    is_chat: bool = True
    is_stream: bool = True
    ignore_eos: bool = False

    @property
    def url(self) -> str:
        return endpoint_url(self.base_url, self.is_chat)


def endpoint_url(base_url: str, is_chat: bool) -> str:
    """`http://host:port`, `…/v1` or a full endpoint URL, as the endpoint URL."""
    url = base_url.rstrip("/")
    if url.endswith("/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + ("/chat/completions" if is_chat else "/completions")


def origin_of(base_url: str) -> str:
    """`http://host:port` of any URL under it (where vLLM serves `/version`)."""
    scheme, _, rest = base_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@dataclass(frozen=True)
class Point:
    """One point of a sweep; `value` is a concurrency or requests per second."""

    profile: Profile
    value: float
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.value <= 0 or (self.profile == "concurrency" and self.value % 1):
            raise ValueError(
                f"a {self.profile} of {self.value} is not valid; give a positive "
                + ("whole number" if self.profile == "concurrency" else "rate or inf")
            )

    @property
    def label(self) -> str:
        if self.profile == "concurrency":
            return f"concurrency {int(self.value)}"
        rate = "inf" if math.isinf(self.value) else f"{self.value:g}"
        cap = f", max {self.max_concurrency}" if self.max_concurrency else ""
        return f"rate {rate}/s{cap}"


@dataclass
class PointRun:
    """The measured requests of one point, and when it ran."""

    point: Point
    results: list[RequestResult]
    duration_s: float
    started_at_unix_s: float
    warmup_results: list[RequestResult] = field(default_factory=list)


async def run_point(
    generator: LoadGenerator,
    target: Target,
    workload: Workload,
    point: Point,
    num_requests: int | None = None,
    duration_s: float | None = None,
    num_warmup: int = 0,
    seed: int = 0,
    on_result: Callable[[RequestResult], object] | None = None,
) -> PointRun:
    """Warm up, then measure `point` for `num_requests` or `duration_s`."""
    if (num_requests is None) == (duration_s is None):
        raise ValueError("give exactly one of num_requests and duration_s")
    if point.profile == "rate" and math.isinf(point.value) and num_requests is None:
        raise ValueError(
            "a request rate of inf sends every request at once, so it needs a "
            "request count; give --num-requests"
        )
    endpoint = EndpointWorkload(
        url=target.url,
        model=target.model,
        is_stream=target.is_stream,
        is_chat=target.is_chat,
        api_key=target.api_key,
    )
    sender = generator.sender(endpoint)

    def body(index: int) -> bytes:
        return workload.request(index).encode(
            target.model, target.is_chat, target.is_stream, target.ignore_eos
        )

    # Warm-up requests get negative indices: the measured ones are the same
    # whether or not a run warms up.
    warmup_concurrency = int(point.value) if point.profile == "concurrency" else 1
    warmup = await _closed_loop(
        sender, lambda i: body(-1 - i), warmup_concurrency, num_warmup, None, None
    )

    # Encode a counted run's bodies before timing, to keep that work off the clock.
    bodies = [body(i) for i in range(num_requests)] if num_requests else None
    next_body = bodies.__getitem__ if bodies is not None else body
    deadline = time.perf_counter() + duration_s if duration_s is not None else None
    started_at_unix_s = time.time()
    started = time.perf_counter()
    if point.profile == "concurrency":
        results = await _closed_loop(
            sender, next_body, int(point.value), num_requests, deadline, on_result
        )
    else:
        results = await _open_loop(
            sender,
            next_body,
            point,
            num_requests,
            deadline,
            random.Random(seed),
            on_result,
        )
    elapsed_s = time.perf_counter() - started
    return PointRun(point, results, elapsed_s, started_at_unix_s, warmup)


async def _closed_loop(
    sender: RequestSender,
    body: Callable[[int], bytes],
    concurrency: int,
    num_requests: int | None,
    deadline: float | None,
    on_result: Callable[[RequestResult], object] | None,
) -> list[RequestResult]:
    results: list[RequestResult] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while True:
            if num_requests is not None and next_index >= num_requests:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            index = next_index
            next_index += 1
            result = await sender.send(body(index))
            results.append(result)
            if on_result is not None:
                on_result(result)

    if num_requests != 0:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


async def _open_loop(
    sender: RequestSender,
    body: Callable[[int], bytes],
    point: Point,
    num_requests: int | None,
    deadline: float | None,
    rng: random.Random,
    on_result: Callable[[RequestResult], object] | None,
) -> list[RequestResult]:
    results: list[RequestResult] = []
    slots = asyncio.Semaphore(point.max_concurrency) if point.max_concurrency else None

    async def send(index: int) -> None:
        if slots is None:
            result = await sender.send(body(index))
        else:
            async with slots:
                result = await sender.send(body(index))
        results.append(result)
        if on_result is not None:
            on_result(result)

    tasks: list[asyncio.Task[None]] = []
    next_arrival = time.perf_counter()
    index = 0
    while num_requests is None or index < num_requests:
        if deadline is not None and time.perf_counter() >= deadline:
            break
        tasks.append(asyncio.create_task(send(index)))
        index += 1
        if not math.isinf(point.value):
            next_arrival += rng.expovariate(point.value)
            await asyncio.sleep(max(0.0, next_arrival - time.perf_counter()))
    await asyncio.gather(*tasks)
    return results
