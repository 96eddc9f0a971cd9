"""Metric definitions checked on hand-made request timings."""

from __future__ import annotations

import math

import pytest

from bench.loadgen import RequestResult
from bench.metrics import Slo, compute_metrics, cost_metrics, tpot_s


def _ok(
    ttft_s: float,
    latency_s: float,
    num_output_tokens: int,
    itl_s: list[float],
    num_prompt_tokens: int | None = None,
    num_cached_tokens: int | None = None,
) -> RequestResult:
    return RequestResult(
        is_ok=True,
        ttft_s=ttft_s,
        latency_s=latency_s,
        num_output_tokens=num_output_tokens,
        num_chunks=num_output_tokens,
        itl_s=itl_s,
        num_prompt_tokens=num_prompt_tokens,
        num_cached_tokens=num_cached_tokens,
    )


def _failed(kind: str) -> RequestResult:
    return RequestResult(is_ok=False, latency_s=9.0, error=kind, error_kind=kind)


@pytest.fixture
def results() -> list[RequestResult]:
    return [
        _ok(0.1, 0.5, 5, [0.1, 0.1, 0.1, 0.1], 10, 4),  # TPOT 0.4 / 4 = 0.1
        _ok(0.3, 1.3, 3, [0.5, 0.5], 20, 0),  # TPOT 1.0 / 2 = 0.5
        _ok(0.2, 0.2, 1, [], 6),  # one token: no TPOT
        _failed("http_500"),
        _failed("timeout"),
        _failed("http_500"),
    ]


def test_counts_tokens_and_throughput_of_successes_only(
    results: list[RequestResult],
) -> None:
    metrics = compute_metrics(results, duration_s=2.0)

    assert metrics["completed"] == 3
    assert metrics["failed"] == 3
    assert metrics["errors_by_kind"] == {"http_500": 2, "timeout": 1}
    assert metrics["total_input_tokens"] == 36
    assert metrics["total_output_tokens"] == 9
    assert metrics["total_cached_tokens"] == 4
    assert metrics["cached_tokens_ratio"] == pytest.approx(4 / 36)
    assert metrics["request_throughput"] == pytest.approx(1.5)
    assert metrics["output_throughput"] == pytest.approx(4.5)
    assert metrics["input_throughput"] == pytest.approx(18.0)
    assert metrics["total_token_throughput"] == pytest.approx(22.5)
    assert metrics["request_goodput"] is None


def test_latencies_follow_vllm_definitions(results: list[RequestResult]) -> None:
    metrics = compute_metrics(results, duration_s=2.0)

    # TTFT 100, 200, 300 ms; percentiles interpolate linearly (numpy's default).
    assert metrics["mean_ttft_ms"] == pytest.approx(200)
    assert metrics["median_ttft_ms"] == pytest.approx(200)
    assert metrics["p90_ttft_ms"] == pytest.approx(280)
    assert metrics["p99_ttft_ms"] == pytest.approx(298)
    assert metrics["std_ttft_ms"] == pytest.approx(math.sqrt(20000 / 3))
    # TPOT leaves out the first token and requests with one token.
    assert metrics["mean_tpot_ms"] == pytest.approx(300)
    assert metrics["median_tpot_ms"] == pytest.approx(300)
    # ITL pools every gap of every request.
    assert metrics["mean_itl_ms"] == pytest.approx(1400 / 6)
    assert metrics["median_itl_ms"] == pytest.approx(100)
    assert metrics["p99_itl_ms"] == pytest.approx(500)
    assert metrics["median_e2el_ms"] == pytest.approx(500)
    assert metrics["mean_e2el_ms"] == pytest.approx(2000 / 3)


def test_goodput_counts_requests_meeting_every_slo(
    results: list[RequestResult],
) -> None:
    slo = Slo.parse("ttft_ms=250, tpot_ms=200")

    metrics = compute_metrics(results, duration_s=2.0, slo=slo)

    # The first meets both; the second misses TTFT; the one-token request meets
    # the TPOT objective by definition, as in vLLM.
    assert metrics["request_goodput"] == pytest.approx(1.0)


def test_unmeasured_values_are_none_not_zero() -> None:
    whole = RequestResult(is_ok=True, latency_s=0.4, num_output_tokens=8)

    metrics = compute_metrics([whole], 1.0, Slo(ttft_ms=1000))

    assert tpot_s(whole) is None
    assert metrics["median_ttft_ms"] is None
    assert metrics["p99_itl_ms"] is None
    assert metrics["total_input_tokens"] is None
    assert metrics["cached_tokens_ratio"] is None
    assert metrics["median_e2el_ms"] == pytest.approx(400)
    # A TTFT objective cannot be met by a request whose TTFT was not measured.
    assert metrics["request_goodput"] == 0


def test_cost_charges_the_hour_to_each_kind_of_token() -> None:
    metrics = {"duration": 2.0, "output_throughput": 4.5, "input_throughput": 18.0}
    metrics["total_token_throughput"] = 22.5

    cost = cost_metrics(metrics, usd_per_hour=3.6)

    assert cost["run_cost_usd"] == pytest.approx(0.002)
    assert cost["output_usd_per_mtok"] == pytest.approx(0.001 / 4.5 * 1e6)
    assert cost["input_usd_per_mtok"] == pytest.approx(0.001 / 18.0 * 1e6)
    assert cost["total_usd_per_mtok"] == pytest.approx(0.001 / 22.5 * 1e6)
    assert set(cost_metrics(metrics, None).values()) == {None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft=5", "not KEY=MS"),
        ("ttft_ms", "not KEY=MS"),
        ("tpot_ms=fast", "needs a number"),
    ],
)
def test_bad_slo_says_how_to_write_one(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Slo.parse(text)


def test_slo_parses_all_keys() -> None:
    slo = Slo.parse("ttft_ms=500,tpot_ms=50,e2el_ms=2000")

    assert slo.as_dict() == {"ttft_ms": 500, "tpot_ms": 50, "e2el_ms": 2000}
    assert not Slo.parse("").is_set()
