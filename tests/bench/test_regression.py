"""The noise-aware comparison against hand-made histories."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench.history import StoredRun
from bench.regression import (
    Policy,
    comparable_runs,
    compare_run,
    figure_history,
    is_baseline,
    judge,
)

POLICY = Policy(history_runs=3, tolerance_pct=10, min_history=2)


def test_a_value_inside_the_recent_range_passes() -> None:
    finding = judge("c=1", "output_throughput", 95.0, [100.0, 90.0, 98.0], POLICY)

    assert finding.verdict == "ok"
    assert not finding.is_failure
    assert finding.worst == 90.0
    assert finding.limit == pytest.approx(81.0)


def test_noise_just_below_the_worst_passes_and_beyond_the_tolerance_fails() -> None:
    history = [100.0, 90.0, 98.0]

    slightly_worse = judge("c=1", "output_throughput", 82.0, history, POLICY)
    much_worse = judge("c=1", "output_throughput", 80.0, history, POLICY)

    assert slightly_worse.verdict == "ok"
    assert much_worse.verdict == "regression"
    assert much_worse.is_failure
    assert much_worse.worse_by_pct == pytest.approx(100 * 10 / 90)
    assert "worse than the worst of the last 3 runs" in much_worse.describe()


def test_lower_is_better_for_latencies() -> None:
    history = [20.0, 22.0, 21.0]

    slower = judge("c=1", "median_tpot_ms", 24.5, history, POLICY)
    faster = judge("c=1", "median_tpot_ms", 17.0, history, POLICY)
    within = judge("c=1", "median_tpot_ms", 24.0, history, POLICY)

    assert slower.direction == "lower"
    assert slower.verdict == "regression"
    assert slower.limit == pytest.approx(24.2)
    assert faster.verdict == "improvement"
    assert not faster.is_failure
    assert within.verdict == "ok"


def test_improvements_need_to_beat_the_best_by_the_tolerance() -> None:
    history = [100.0, 90.0, 98.0]

    assert judge("p", "output_throughput", 109.0, history, POLICY).verdict == "ok"
    assert (
        judge("p", "output_throughput", 111.0, history, POLICY).verdict == "improvement"
    )


def test_too_little_history_gives_no_verdict() -> None:
    finding = judge("c=1", "output_throughput", 1.0, [100.0], POLICY)

    assert finding.verdict == "no-baseline"
    assert not finding.is_failure
    assert finding.limit is None
    assert judge("c=1", "output_throughput", 1.0, [], POLICY).verdict == "no-baseline"


def test_only_the_last_n_runs_form_the_range() -> None:
    # The oldest value (50) would make 60 look fine; it is beyond history_runs.
    finding = judge("p", "output_throughput", 60.0, [100, 95, 98, 50], POLICY)

    assert finding.baseline == (100, 95, 98)
    assert finding.verdict == "regression"


def test_a_value_not_measured_is_not_judged() -> None:
    finding = judge("p", "median_ttft_ms", None, [1.0, 2.0, 3.0], POLICY)

    assert finding.verdict == "not-measured"
    assert not finding.is_failure


def _result(
    points: dict[str, dict[str, Any]], hardware: str = "h100", **config: Any
) -> dict[str, Any]:
    return {
        "environment": {"hardware": hardware},
        "config": {
            "url": "http://a/v1/chat/completions",
            "model": "m",
            "workload": {"kind": "synthetic", "input_len": 8},
            "points": list(points),
            "suite": "s",
            "benchmark": "b",
            **config,
        },
        "points": [{"label": label, **figures} for label, figures in points.items()],
    }


def test_compare_run_matches_points_by_label_and_flags_failed_requests() -> None:
    policy = Policy(
        history_runs=3, tolerance_pct=10, min_history=2, watch=("p99_itl_ms",)
    )
    earlier = [
        _result({"c=1": {"p99_itl_ms": 10.0}, "c=4": {"p99_itl_ms": 20.0}}),
        _result({"c=4": {"p99_itl_ms": 21.0}, "c=1": {"p99_itl_ms": 11.0}}),
    ]
    new = _result(
        {
            "c=1": {"p99_itl_ms": 11.5, "failed": 0},
            "c=4": {"p99_itl_ms": 30.0, "failed": 2},
            "c=16": {"p99_itl_ms": 50.0},
        }
    )

    findings = compare_run(new, earlier, policy)

    verdicts = {(f.point, f.figure): f.verdict for f in findings}
    assert verdicts == {
        ("c=1", "p99_itl_ms"): "ok",
        ("c=4", "failed"): "errors",
        ("c=4", "p99_itl_ms"): "regression",
        ("c=16", "p99_itl_ms"): "no-baseline",
    }
    assert "2 requests failed" in findings[1].describe()


def test_figure_history_skips_runs_without_the_point_or_figure() -> None:
    results = [
        _result({"c=1": {"median_ttft_ms": 5.0}}),
        _result({"c=2": {"median_ttft_ms": 7.0}}),
        _result({"c=1": {"median_ttft_ms": None}}),
        _result({"c=1": {"median_ttft_ms": 6.0}}),
    ]

    assert figure_history(results, "c=1", "median_ttft_ms") == [5.0, 6.0]


def _stored(result: dict[str, Any], run_id: int) -> StoredRun:
    return StoredRun(
        run_id, "2026-01-01", "run", None, None, None, None, "m", None, {}, result
    )


def test_comparable_runs_share_suite_benchmark_hardware_and_load() -> None:
    new = _result({"c=1": {}})
    runs = [
        _stored(_result({"c=1": {}, "c=8": {}}, url="http://other/v1"), 1),
        _stored(_result({"c=1": {}}, hardware="a10"), 2),
        _stored(_result({"c=1": {}}, benchmark="other"), 3),
        _stored(_result({"c=1": {}}, suite="other"), 4),
        _stored(_result({"c=1": {}}, workload={"kind": "synthetic"}), 5),
        _stored(_result({"c=1": {}}, model="n"), 6),
        _stored(_result({"c=1": {}}), 7),
    ]

    comparable = comparable_runs(runs, new)

    # The URL and the list of points may change; nothing else may.
    assert comparable == [runs[0].result, runs[6].result]


def test_only_accepted_nightly_runs_are_baselines() -> None:
    assert is_baseline({"nightly": {"is_baseline": True}})
    assert not is_baseline({"nightly": {"is_baseline": False}})
    assert not is_baseline({})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_history": 4}, "min_history must be between 1 and history_runs (3)"),
        ({"tolerance_pct": -1}, "tolerance_pct must be >= 0"),
        ({"watch": ("ttft",)}, "cannot watch ttft"),
    ],
)
def test_policy_says_what_is_wrong(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Policy(**{"history_runs": 3, **options})
