"""Capacity from the bench history, written by bench's own History class so that
the reader in server/ stays pinned to the writer's schema."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bench.history import History
from server.breakeven.bench_history import latest_run
from server.breakeven.capacity import from_history
from server.breakeven.errors import BreakEvenError

SERVER = Path(__file__).resolve().parents[3] / "server"


def point(
    concurrency: int,
    tokens_per_s: float,
    p99_ttft_ms: float,
    p99_tpot_ms: float,
    **changes: Any,
) -> dict[str, Any]:
    """A `bench run` point under vLLM's key names; 20% of its tokens are output."""
    fields = {
        "label": f"concurrency {concurrency}",
        "profile": "concurrency",
        "max_concurrency": concurrency,
        "completed": 100,
        "failed": 0,
        "total_input_tokens": 80_000,
        "total_output_tokens": 20_000,
        "request_throughput": 10.0,
        "request_goodput": None,
        "output_throughput": tokens_per_s * 0.2,
        "total_token_throughput": tokens_per_s,
        "median_ttft_ms": p99_ttft_ms / 2,
        "p99_ttft_ms": p99_ttft_ms,
        "p99_tpot_ms": p99_tpot_ms,
    }
    return {**fields, **changes}


def run_result(
    created_at: str,
    model: str,
    hardware: str | None,
    git: str,
    points: list[dict[str, Any]],
    kind: str = "run",
) -> dict[str, Any]:
    """A result shaped as `bench.sweep.run_result` makes it."""
    return {
        "kind": kind,
        "created_at": created_at,
        "environment": {"git_revision": git, "hardware": hardware},
        "config": {"model": model, "url": "http://127.0.0.1:8000/v1"},
        "points": points,
    }


# Run 2 is the sweep most tests read: three points, each faster and slower.
SWEEP = [
    point(1, 1_200.0, 120.0, 10.0),
    point(8, 5_000.0, 400.0, 20.0),
    point(32, 9_000.0, 1_500.0, 45.0),
]


@pytest.fixture
def history_path(tmp_path: Path) -> Path:
    path = tmp_path / "bench.sqlite3"
    history = History(path)
    for result in (
        run_result("2026-11-01T10:00:00+00:00", "smol", "h100", "aaa", [
            point(1, 1_000.0, 100.0, 10.0), point(8, 4_000.0, 300.0, 20.0)
        ]),
        run_result("2026-11-02T10:00:00+00:00", "smol", "h100", "bbb", SWEEP),
        run_result("2026-11-03T10:00:00+00:00", "smol", "l40s", "ccc", [
            point(8, 2_000.0, 600.0, 30.0)
        ]),
        run_result("2026-11-04T10:00:00+00:00", "big", "h100", "ddd", [
            point(8, 3_000.0, 200.0, 25.0)
        ]),
        # Another kind stored under the same model is never a capacity.
        run_result("2026-11-05T10:00:00+00:00", "smol", "h100", "eee", [
            point(8, 99_000.0, 1.0, 1.0)
        ], kind="calibrate"),
    ):  # fmt: skip
        history.record(result)
    return path


def test_the_latest_run_of_the_model_wins(history_path: Path) -> None:
    run = latest_run(history_path, "run", "smol")
    assert (run.id, run.hardware, run.git_revision) == (3, "l40s", "ccc")

    capacity = from_history(run)

    assert capacity.prompt_tokens_per_s == 2_000
    assert "run 3" in capacity.source


def test_the_hardware_filter_picks_an_older_run(history_path: Path) -> None:
    run = latest_run(history_path, "run", "smol", hardware="h100")
    assert (run.id, run.git_revision) == (2, "bbb")

    # No SLO: the fastest point, 9,000 tokens/s; 20,000 of 100,000 tokens output.
    capacity = from_history(run)

    assert capacity.is_blended
    assert capacity.prompt_tokens_per_s == 9_000
    assert capacity.measured_output_share == pytest.approx(0.2)
    for part in (
        str(history_path),
        "run 2",
        "2026-11-02T10:00:00+00:00",
        "git bbb",
        "point 'concurrency 32'",
    ):
        assert part in capacity.source
    assert any("assumed 1" in note for note in capacity.notes)


def test_the_slo_picks_the_fastest_point_meeting_it(history_path: Path) -> None:
    run = latest_run(history_path, "run", "smol", hardware="h100")

    # p99 TTFT ≤ 500 ms: concurrency 8 (400 ms), not 32 (1,500 ms).
    at_ttft = from_history(run, slo_p99_ttft_ms=500)
    # ... and p99 TPOT ≤ 15 ms: only concurrency 1 (10 ms) is left.
    at_both = from_history(run, slo_p99_ttft_ms=500, slo_p99_tpot_ms=15)
    # Over 2 GPUs, each serves half.
    on_two = from_history(run, num_gpus=2, slo_p99_ttft_ms=500)

    assert at_ttft.prompt_tokens_per_s == 5_000
    assert "the fastest of 3 points meeting p99_ttft_ms ≤ 500" in at_ttft.source
    assert at_both.prompt_tokens_per_s == 1_200
    assert on_two.prompt_tokens_per_s == 2_500
    assert on_two.notes == ()


def test_no_point_meets_the_slo(history_path: Path) -> None:
    run = latest_run(history_path, "run", "smol", hardware="h100")
    # The closest is concurrency 1: its 120 ms is 2.4x the limit, the others more.
    message = (
        r"no point meets the SLO \(p99_ttft_ms ≤ 50\); the closest, point 1 "
        r"\(concurrency 1\), had p99_ttft_ms 120 at 1,200 tokens/s"
    )
    with pytest.raises(BreakEvenError, match=message):
        from_history(run, slo_p99_ttft_ms=50)


def test_goodput_and_failed_points(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    points = [
        # Every request failed: it measured nothing, so it is left out.
        {**point(64, 0.0, 0.0, 0.0, completed=0, failed=100), "p99_ttft_ms": None},
        # 8 of 10 req/s met the bench's --slo: 80% of 5,000 tokens/s count.
        point(8, 5_000.0, 400.0, 20.0, request_goodput=8.0, failed=3),
    ]
    History(path).record(
        run_result("2026-11-02T10:00:00+00:00", "m", None, "x", points)
    )

    capacity = from_history(latest_run(path, "run", "m"), slo_p99_ttft_ms=500)

    assert capacity.prompt_tokens_per_s == pytest.approx(4_000)
    assert "hardware unnamed" in capacity.source
    assert any("goodput" in note for note in capacity.notes)
    assert any("3 requests failed" in note for note in capacity.notes)


def test_errors_say_what_the_history_holds(history_path: Path, tmp_path: Path) -> None:
    with pytest.raises(
        BreakEvenError,
        match=r"no `bench run` of model 'tiny'; it has runs of 'big', 'smol'",
    ):
        latest_run(history_path, "run", "tiny")
    with pytest.raises(
        BreakEvenError,
        match=r"on hardware 'a100'; its runs are on hardware 'h100', 'l40s'",
    ):
        latest_run(history_path, "run", "smol", hardware="a100")
    with pytest.raises(BreakEvenError, match="holds no `bench compare` at all"):
        latest_run(history_path, "compare", "smol")

    missing = tmp_path / "absent" / "bench.sqlite3"
    with pytest.raises(BreakEvenError, match="no bench history there"):
        latest_run(missing, "run", "smol")
    assert not missing.parent.exists()

    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello, this is not SQLite\n" * 10)
    with pytest.raises(BreakEvenError, match="cannot read it as a bench history"):
        latest_run(not_sqlite, "run", "smol")


def test_the_server_never_imports_bench() -> None:
    # The gateway must not depend on the benchmark tool; this reader exists so
    # that the break-even reports need not.
    offenders = []
    for path in SERVER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [
                f"{path.relative_to(SERVER.parent)}: {name}"
                for name in names
                if name == "bench" or name.startswith("bench.")
            ]
    assert offenders == []
