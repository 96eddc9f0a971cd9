"""Closed and open loops against the in-process mock server."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.loadgen import LoadGenerator
from bench.mock_server import MockServer
from bench.runner import Point, Target, endpoint_url, origin_of, run_point
from bench.workloads import SharedPrefixWorkload, SyntheticWorkload
from tests.server.conftest import free_port


@pytest.fixture
def mock() -> MockServer:
    return MockServer(token_delay_s=0.001, cached_tokens=8)


@pytest.fixture
async def mock_url(mock: MockServer) -> AsyncIterator[str]:
    runner = web.AppRunner(mock.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_closed_loop_measures_requests_after_warmup(
    mock: MockServer, mock_url: str
) -> None:
    target = Target(mock_url + "/v1", "m", ignore_eos=True)
    workload = SyntheticWorkload(input_len=20, output_len=5)

    async with LoadGenerator() as generator:
        run = await run_point(
            generator,
            target,
            workload,
            Point("concurrency", 3),
            num_requests=12,
            num_warmup=3,
        )

    assert mock.stats.num_requests == 15
    assert mock.stats.last_body["ignore_eos"] is True
    assert len(run.warmup_results) == 3
    assert len(run.results) == 12
    assert all(r.is_ok for r in run.results)
    assert {r.num_output_tokens for r in run.results} == {5}
    assert {r.num_prompt_tokens for r in run.results} == {20}
    assert {r.num_cached_tokens for r in run.results} == {8}
    assert all(r.ttft_s is not None and len(r.itl_s) == 4 for r in run.results)
    assert 0 < max(r.latency_s for r in run.results) <= run.duration_s


async def test_open_loop_sends_poisson_arrivals_at_the_rate(mock_url: str) -> None:
    target = Target(mock_url, "m", is_chat=False)
    workload = SyntheticWorkload(input_len=4, output_len=2)

    async with LoadGenerator() as generator:
        run = await run_point(
            generator, target, workload, Point("rate", 200.0), num_requests=60
        )

    assert len(run.results) == 60
    assert all(r.is_ok for r in run.results)
    # 60 arrivals at 200/s take about 0.3 s; allow a loaded machine its noise.
    assert 0.1 < run.duration_s < 2.0


async def test_open_loop_caps_requests_in_flight(
    mock: MockServer, mock_url: str
) -> None:
    in_flight = 0
    peak = 0
    original = mock._complete

    async def counting(request: web.Request, is_chat: bool) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(request, is_chat)
        finally:
            in_flight -= 1

    mock._complete = counting  # type: ignore[method-assign]
    app_url = mock_url
    async with LoadGenerator() as generator:
        run = await run_point(
            generator,
            Target(app_url, "m"),
            SyntheticWorkload(4, 8),
            Point("rate", math.inf, max_concurrency=2),
            num_requests=10,
        )

    assert len(run.results) == 10
    assert peak <= 2


async def test_duration_bounds_a_run(mock_url: str) -> None:
    async with LoadGenerator() as generator:
        run = await run_point(
            generator,
            Target(mock_url, "m"),
            SharedPrefixWorkload(prefix_len=16, suffix_len=4, output_len=2),
            Point("concurrency", 2),
            duration_s=0.3,
        )

    assert run.results
    assert 0.3 <= run.duration_s < 2.0


async def test_errors_are_kept_by_kind(mock_url: str) -> None:
    async with LoadGenerator() as generator:
        run = await run_point(
            generator,
            Target(mock_url, "fail"),
            SyntheticWorkload(4, 2),
            Point("concurrency", 1),
            num_requests=2,
        )

    assert [r.error_kind for r in run.results] == ["http_400", "http_400"]


def test_inf_rate_needs_a_count_and_points_are_checked() -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        Point("concurrency", 1.5)
    with pytest.raises(ValueError, match="positive"):
        Point("rate", 0)
    assert Point("rate", math.inf, 4).label == "rate inf/s, max 4"
    assert Point("concurrency", 8).label == "concurrency 8"


async def test_inf_rate_by_duration_is_refused() -> None:
    async with LoadGenerator() as generator:
        with pytest.raises(ValueError, match="--num-requests"):
            await run_point(
                generator,
                Target("http://127.0.0.1:9", "m"),
                SyntheticWorkload(),
                Point("rate", math.inf),
                duration_s=1,
            )


@pytest.mark.parametrize(
    ("base", "is_chat", "url"),
    [
        ("http://h:1", True, "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/", False, "http://h:1/v1/completions"),
        ("http://h:1/v1/completions", True, "http://h:1/v1/completions"),
    ],
)
def test_endpoint_url(base: str, is_chat: bool, url: str) -> None:
    assert endpoint_url(base, is_chat) == url
    assert origin_of(url) == "http://h:1"


async def test_whole_responses_carry_usage_but_no_stream_timings(
    mock_url: str,
) -> None:
    async with LoadGenerator() as generator:
        run = await run_point(
            generator,
            Target(mock_url, "m", is_stream=False),
            SyntheticWorkload(10, 3),
            Point("concurrency", 1),
            num_requests=2,
        )

    (first, _) = run.results
    assert (first.num_prompt_tokens, first.num_cached_tokens) == (10, 8)
    assert first.num_output_tokens == 3
    assert first.ttft_s is None
