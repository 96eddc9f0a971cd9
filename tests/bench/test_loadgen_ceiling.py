"""The load generator's ceiling benchmark against the in-process mock, and the
benchmark lock file it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from bench.loadgen_ceiling import CeilingConfig, measure_ceiling
from bench.mock_server import MockServer
from bench.services import ServiceError, benchmark_lock
from tests.server.conftest import free_port


@pytest.fixture
def mock() -> MockServer:
    return MockServer(api_key="key")


@pytest.fixture
async def mock_url(mock: MockServer) -> AsyncIterator[str]:
    runner = web.AppRunner(mock.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_both_clients_run_every_round_in_both_modes(
    mock: MockServer, mock_url: str
) -> None:
    config = CeilingConfig(
        concurrency=2, num_requests=6, rounds=2, input_len=4, output_len=3
    )
    seen: list[tuple[int, str, str]] = []

    result = await measure_ceiling(
        mock_url,
        "key",
        config,
        on_run=lambda index, mode, tool, _run: seen.append((index, mode, tool)),
    )

    # Turns alternate which client goes first.
    assert seen == [
        (0, "whole", "bare"),
        (0, "whole", "loadgen"),
        (0, "stream", "bare"),
        (0, "stream", "loadgen"),
        (1, "whole", "loadgen"),
        (1, "whole", "bare"),
        (1, "stream", "loadgen"),
        (1, "stream", "bare"),
    ]
    # Per run: one warm-up request per client, then the measured ones.
    assert mock.stats.num_requests == 2 * 2 * 2 * (2 + 6)
    assert mock.stats.last_body["prompt"]
    assert set(result["modes"]) == {"whole", "stream"}
    for summary in result["modes"].values():
        for tool in ("bare", "loadgen"):
            row = summary[tool]
            assert row["num_errors"] == 0
            assert len(row["requests_per_s_by_round"]) == 2
            assert all(rate > 0 for rate in row["requests_per_s_by_round"])
            assert row["client_cpu_per_request_ms"] > 0
            assert row["mock_cores"] is None
        assert len(summary["ratio_by_round"]) == 2
        assert summary["ratio"] > 0
        assert isinstance(summary["ratio_at_least_0_8"], bool)
    json.dumps(result)


async def test_a_wrong_key_counts_as_errors_for_both(mock_url: str) -> None:
    config = CeilingConfig(concurrency=1, num_requests=3, rounds=1, modes=("whole",))

    result = await measure_ceiling(mock_url, "wrong", config)

    whole = result["modes"]["whole"]
    assert whole["bare"]["num_errors"] == 3
    assert whole["loadgen"]["num_errors"] == 3
    assert whole["ratio"] is None


def test_config_rejects_a_count_below_one() -> None:
    with pytest.raises(ValueError, match="--num-requests is 0"):
        CeilingConfig(num_requests=0)


def test_lock_file_is_held_then_removed(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"

    with benchmark_lock("test", Console(), path=lock):
        assert lock.read_text() == f"{os.getpid()} test\n"

    assert not lock.exists()


def test_lock_of_an_exited_process_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock.write_text(f"{finished.stdout.strip()} old\n")

    with benchmark_lock("new", Console(), path=lock):
        assert lock.read_text().endswith(" new\n")


def test_lock_of_a_live_process_times_out_with_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"
    lock.write_text(f"{os.getppid()} other-bench\n")

    with (
        pytest.raises(ServiceError, match=r"other-bench \(pid \d+\)"),
        benchmark_lock("new", Console(quiet=True), path=lock, timeout_s=0),
    ):
        pass

    assert lock.read_text() == f"{os.getppid()} other-bench\n"
