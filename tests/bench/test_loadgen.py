"""The load generator against the in-process mock, and the pass-through proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench.loadgen import Workload, percentile, run_load
from bench.mock_server import MockServer
from tests.processes import is_running
from tests.server.conftest import free_port


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
def mock() -> MockServer:
    return MockServer(token_delay_s=0.001)


@pytest.fixture
async def mock_url(mock: MockServer) -> AsyncIterator[str]:
    async for url in _serve(mock.app()):
        yield url


def _chat(
    base_url: str,
    max_tokens: int = 16,
    is_stream: bool = False,
    include_usage: bool = False,
) -> Workload:
    return Workload(
        url=base_url + "/v1/chat/completions",
        model="m",
        max_tokens=max_tokens,
        is_stream=is_stream,
        include_usage=include_usage,
    )


async def test_counts_requests_and_leaves_warmup_out(
    mock: MockServer, mock_url: str
) -> None:
    seen_at_start: list[int] = []

    result = await run_load(
        _chat(mock_url, max_tokens=5),
        concurrency=4,
        num_requests=10,
        num_warmup=3,
        on_start=lambda: seen_at_start.append(mock.stats.num_requests),
    )

    assert (result.num_requests, result.num_errors) == (10, 0)
    assert seen_at_start == [3]
    assert mock.stats.num_requests == 13
    assert round(result.output_tokens_per_s * result.duration_s) == 50
    assert result.requests_per_s == pytest.approx(10 / result.duration_s)
    assert result.ttft_median_s is None
    assert result.latency_median_s is not None
    assert result.latency_p99_s is not None
    assert 0 < result.latency_median_s <= result.latency_p99_s <= result.duration_s


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("is_chat", [False, True])
async def test_stream_counts_text_chunks_and_times_them(
    mock_url: str, include_usage: bool, is_chat: bool
) -> None:
    path = "/v1/chat/completions" if is_chat else "/v1/completions"
    workload = Workload(
        url=mock_url + path,
        model="m",
        max_tokens=6,
        is_stream=True,
        is_chat=is_chat,
        include_usage=include_usage,
    )

    result = await run_load(workload, concurrency=3, num_requests=6)

    assert (result.num_requests, result.num_errors) == (6, 0)
    # The chat stream's role-only first chunk carries no text and is not a token.
    assert round(result.chunks_per_s * result.duration_s) == 36
    assert round(result.output_tokens_per_s * result.duration_s) == 36
    assert result.ttft_median_s is not None
    assert result.latency_median_s is not None
    assert result.itl_median_s is not None
    assert 0 < result.ttft_median_s <= result.latency_median_s
    assert result.itl_median_s >= 0


async def _merged_tokens_stream(request: web.Request) -> web.StreamResponse:
    # vLLM can put several tokens in one chunk; usage then tells the true count.
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for chunk in (
        {"choices": [{"index": 0, "delta": {"content": "two tokens"}}]},
        {"choices": [{"index": 0, "delta": {"content": " three more ok"}}]},
        {"choices": [], "usage": {"completion_tokens": 5}},
    ):
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


async def test_stream_takes_output_tokens_from_usage() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _merged_tokens_stream)
    async for url in _serve(app):
        workload = _chat(url, is_stream=True, include_usage=True)
        result = await run_load(workload, concurrency=1, num_requests=2)

        assert result.num_errors == 0
        assert round(result.chunks_per_s * result.duration_s) == 4
        assert round(result.output_tokens_per_s * result.duration_s) == 10


@pytest.mark.parametrize("is_stream", [False, True])
async def test_http_errors_are_counted(mock_url: str, is_stream: bool) -> None:
    workload = Workload(
        url=mock_url + "/v1/chat/completions", model="fail", is_stream=is_stream
    )

    result = await run_load(workload, concurrency=2, num_requests=4)

    assert (result.num_requests, result.num_errors) == (4, 4)
    assert result.requests_per_s == 0
    assert result.latency_median_s is None
    assert result.error_messages[0].startswith("HTTP 400")


async def test_unreachable_server_is_counted_as_errors() -> None:
    workload = _chat(f"http://127.0.0.1:{free_port()}")

    result = await run_load(workload, concurrency=2, num_requests=3)

    assert (result.num_requests, result.num_errors) == (3, 3)
    assert "Connect" in result.error_messages[0]


async def test_duration_mode_runs_until_the_deadline(mock_url: str) -> None:
    result = await run_load(_chat(mock_url, max_tokens=2), 2, duration_s=0.3)

    assert result.num_requests > 0
    assert result.num_errors == 0
    assert result.duration_s >= 0.3


async def test_needs_exactly_one_stop_condition(mock_url: str) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await run_load(_chat(mock_url), 1)
    with pytest.raises(ValueError, match="exactly one"):
        await run_load(_chat(mock_url), 1, num_requests=1, duration_s=1.0)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)


@contextlib.contextmanager
def _proxy_process(port: int, upstream: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "bench.passthrough_proxy", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--upstream", upstream],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert not is_running(process.pid)


async def _wait_until_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    pytest.fail(f"the pass-through proxy did not answer at {url}")


async def test_passthrough_proxy_forwards_whole_and_streamed_responses(
    mock: MockServer, mock_url: str
) -> None:
    port = free_port()
    proxy_url = f"http://127.0.0.1:{port}"
    with _proxy_process(port, mock_url):
        async with aiohttp.ClientSession() as session:
            await _wait_until_up(session, proxy_url + "/health")
            body = {"model": "m", "messages": [], "max_tokens": 3}
            async with session.post(
                proxy_url + "/v1/chat/completions", json=body
            ) as response:
                assert response.status == 200
                data = await response.json()
            assert data["choices"][0]["message"]["content"] == "w0 w1 w2"
            assert mock.stats.last_headers["Content-Type"] == "application/json"

            result = await run_load(
                _chat(proxy_url, max_tokens=4, is_stream=True), 2, num_requests=4
            )
            assert result.num_errors == 0
            assert round(result.chunks_per_s * result.duration_s) == 16
