"""The capacity benchmark's summary, ratios and targets, on hand-made numbers."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from bench.gateway_capacity import LABELS, Target, capacity_result, summarize

_ARGS = argparse.Namespace(concurrency=64, rounds=3, seconds=5.0)


def _row(requests_per_s: float, proxy_cpu_s: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "requests_per_s": requests_per_s,
        "chunks_per_s": requests_per_s * 16,
        "latency_median_s": 0.01,
        "ttft_median_s": 0.005,
        "num_errors": 1,
        "mock_cores": 0.5,
        "client_cores": 0.8,
    }
    if proxy_cpu_s is not None:
        row |= {"proxy_cores": 0.9, "proxy_cpu_s_per_request": proxy_cpu_s}
    return row


def _summary(
    requests_per_s: float, proxy_cpu_s: float | None, ttft_s: float = 0.005
) -> dict[str, Any]:
    target = Target("t", "http://x", None, None)
    target.rounds["whole"] = [_row(requests_per_s, proxy_cpu_s)] * 3
    target.rounds["stream"] = [_row(requests_per_s / 2, proxy_cpu_s)]
    # One client: the TTFT of each of three rounds.
    target.rounds["single"] = [
        {"ttft_median_s": ttft_s + jitter_s, "num_errors": 0}
        for jitter_s in (0.0, 0.0004, -0.0002)
    ]
    return summarize(target)


def test_summary_takes_medians_over_rounds() -> None:
    target = Target("gateway", "http://x", None, None)
    target.rounds["whole"] = [_row(r, r / 1e7) for r in (900.0, 1500.0, 1000.0)]
    target.rounds["stream"] = [_row(500.0, 0.001), _row(700.0, 0.003)]

    summary = summarize(target)

    assert summary["requests_per_s"] == 1000.0
    assert summary["requests_per_s_by_round"] == [900.0, 1500.0, 1000.0]
    assert summary["stream_chunks_per_s"] == 600.0 * 16
    assert summary["proxy_cpu_s_per_request"] == pytest.approx(1e-4)
    assert summary["proxy_cpu_s_per_stream"] == pytest.approx(0.002)
    assert summary["num_errors"] == 5
    assert summary["proxy_cores_whole"] == 0.9


def test_result_has_every_target_ratio_and_check() -> None:
    summaries = {
        "direct": _summary(5000.0, None),
        "bare": _summary(2500.0, 0.0002),
        # At one client: 1.5 ms added to the mock's TTFT, and 3 ms.
        "gateway": _summary(1600.0, 0.0004, ttft_s=0.0065),
        "gateway_unmetered": _summary(2000.0, 0.0003, ttft_s=0.008),
    }

    result = capacity_result(summaries, _ARGS)

    assert list(result["targets"]) == list(LABELS)
    assert result["targets"]["litellm"] is None
    ratios = result["ratios"]
    assert ratios["gateway_to_bare_requests"] == pytest.approx(0.64)
    assert ratios["gateway_unmetered_to_bare_requests"] == pytest.approx(0.8)
    assert ratios["gateway_to_gateway_unmetered_requests"] == pytest.approx(0.8)
    assert ratios["gateway_to_gateway_unmetered_stream_chunks"] == pytest.approx(0.8)
    assert ratios["gateway_to_litellm_requests"] is None
    assert result["metering_added_cpu_s_per_request"] == pytest.approx(0.0001)
    assert result["metering_added_cpu_s_per_stream"] == pytest.approx(0.0001)
    added_s = result["ttft_added_at_1_client_s"]
    assert added_s["gateway"] == pytest.approx(0.0015)
    assert added_s["bare"] == pytest.approx(0.0)
    assert added_s["litellm"] is None
    assert result["targets_met"] == {
        "issue_2": {
            "gateway_ttft_added_at_1_client_at_most_2_ms": True,
            "gateway_unmetered_ttft_added_at_1_client_at_most_2_ms": False,
            "gateway_requests_per_s_at_least_1500": True,
            "gateway_to_bare_requests_at_least_0_6": True,
            "gateway_unmetered_requests_per_s_at_least_1500": True,
            "gateway_unmetered_to_bare_requests_at_least_0_6": True,
        },
        "issue_3": {"gateway_to_gateway_unmetered_requests_at_least_0_9": False},
    }
    json.dumps(result)


def test_unknown_values_make_unknown_checks() -> None:
    summaries = {"direct": _summary(5000.0, None), "bare": _summary(2500.0, 0.0002)}

    result = capacity_result(summaries, _ARGS)

    assert result["metering_added_cpu_s_per_request"] is None
    checks = result["targets_met"]
    assert set(checks["issue_2"].values()) == {None}
    assert set(checks["issue_3"].values()) == {None}
