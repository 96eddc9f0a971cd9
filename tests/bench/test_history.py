"""The run history in SQLite."""

from __future__ import annotations

from pathlib import Path

from bench.history import History


def _result(kind: str, model: str, figure: float) -> dict[str, object]:
    return {
        "kind": kind,
        "created_at": "2026-01-02T03:04:05+00:00",
        "environment": {
            "git_revision": "abc123",
            "hardware": "h",
            "engine_version": "vllm 1",
        },
        "config": {"model": model, "url": "http://x/v1/chat/completions"},
        "points": [{"output_throughput": figure}],
    }


def test_records_runs_and_reads_them_back_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bench.sqlite3"
    history = History(path)
    first = history.record(_result("run", "a", 1.0))
    history.record(_result("calibrate", "a", 2.0))
    last = History(path).record(_result("run", "b", 3.0))

    runs = history.runs()

    assert [run.id for run in runs] == [last, last - 1, first]
    assert runs[0].model == "b"
    assert runs[0].git_revision == "abc123"
    assert runs[0].engine_version == "vllm 1"
    assert runs[0].result["points"] == [{"output_throughput": 3.0}]
    assert [run.id for run in history.runs(kind="run", model="a")] == [first]
    assert len(history.runs(limit=1)) == 1
