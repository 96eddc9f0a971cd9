"""The overhead benchmark's summaries, comparisons and targets, on hand-made numbers."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from bench.gateway_overhead import Route, _rotated, overhead_result, summarize

_ARGS = argparse.Namespace(
    rounds=2,
    ttft_requests=3,
    ttft_max_tokens=16,
    concurrency=32,
    throughput_requests=64,
    throughput_max_tokens=64,
)


def _route(
    name: str,
    ttfts_ms: list[list[float]],
    tokens_per_s: list[float],
    proxy_cpu_s: float | None,
) -> Route:
    route = Route(name, "http://x", None)
    route.ttft_s_by_round = [[t / 1000 for t in ttfts] for ttfts in ttfts_ms]
    route.ttft_proxy_cpu_s_by_round = [proxy_cpu_s] * len(ttfts_ms)
    route.throughput = [_throughput_row(rate, proxy_cpu_s) for rate in tokens_per_s]
    return route


def _throughput_row(tokens_per_s: float, proxy_cpu_s: float | None) -> dict[str, Any]:
    return {
        "output_tokens_per_s": tokens_per_s,
        "itl_median_s": 0.02,
        "num_errors": 0,
        "proxy_cores": None if proxy_cpu_s is None else 0.1,
        "engine_cores": 1.5,
        "proxy_cpu_s_per_request": None if proxy_cpu_s is None else 2 * proxy_cpu_s,
    }


def _summaries() -> dict[str, dict[str, Any]]:
    routes = [
        _route("direct", [[10, 11, 12], [20, 21, 22]], [1000, 900], None),
        _route("gateway_unmetered", [[11, 12, 13], [21, 23, 25]], [990, 890], 0.001),
        _route("gateway", [[12, 12.5, 14], [21, 23.8, 30]], [940, 870], 0.0015),
    ]
    return {route.name: summarize(route) for route in routes}


def test_summary_takes_the_median_of_round_medians() -> None:
    summary = _summaries()["gateway"]

    assert summary["ttft_median_s_by_round"] == pytest.approx([0.0125, 0.0238])
    assert summary["ttft_median_s"] == pytest.approx(0.01815)
    assert summary["output_tokens_per_s"] == 905
    assert summary["ttft_proxy_cpu_s_per_request"] == 0.0015
    assert summary["throughput_proxy_cpu_s_per_request"] == 0.003


def test_result_compares_each_gateway_with_direct_and_with_each_other() -> None:
    result = overhead_result(_summaries(), _ARGS)

    comparisons = result["comparisons"]
    assert list(comparisons) == [
        "gateway_unmetered_vs_direct",
        "gateway_vs_direct",
        "gateway_vs_gateway_unmetered",
    ]
    unmetered = comparisons["gateway_unmetered_vs_direct"]
    assert unmetered["ttft_added_s_by_round"] == pytest.approx([0.001, 0.002])
    assert unmetered["ttft_added_s"] == pytest.approx(0.0015)
    assert unmetered["throughput_ratio_by_round"] == pytest.approx([0.99, 890 / 900])
    metering = comparisons["gateway_vs_gateway_unmetered"]
    assert metering["ttft_added_s_by_round"] == pytest.approx([0.0005, 0.0008])
    assert metering["throughput_ratio"] == pytest.approx((940 / 990 + 870 / 890) / 2)
    assert result["metering_added_cpu_s_per_ttft_request"] == pytest.approx(0.0005)
    assert result["metering_added_cpu_s_per_throughput_request"] == pytest.approx(0.001)
    assert result["targets_met"] == {
        "issue_2": {
            "gateway_vs_direct_ttft_added_at_most_2_ms": False,
            "gateway_vs_direct_throughput_ratio_at_least_0_97": False,
            "gateway_unmetered_vs_direct_ttft_added_at_most_2_ms": True,
            "gateway_unmetered_vs_direct_throughput_ratio_at_least_0_97": True,
        },
        "issue_3": {
            "gateway_vs_gateway_unmetered_ttft_added_at_most_1_ms": True,
            "gateway_vs_gateway_unmetered_throughput_ratio_at_least_0_97": False,
        },
    }
    json.dumps(result)


def test_a_round_without_ttft_leaves_its_differences_unknown() -> None:
    summaries = _summaries()
    summaries["gateway"]["ttft_median_s_by_round"] = [None, None]

    result = overhead_result(summaries, _ARGS)

    assert result["comparisons"]["gateway_vs_direct"]["ttft_added_s"] is None
    issue_3 = result["targets_met"]["issue_3"]
    assert issue_3["gateway_vs_gateway_unmetered_ttft_added_at_most_1_ms"] is None


def test_turns_rotate_over_the_routes() -> None:
    routes = [Route(name, "http://x", None) for name in ("a", "b", "c")]

    orders = [[r.name for r in _rotated(routes, shift)] for shift in range(4)]

    assert orders == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
