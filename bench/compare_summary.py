"""`bench compare`'s figures per model: medians over rounds, cost, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from bench.compare_variants import ModelFacts

# Medians over rounds; the first three also get a min-max range.
_SUMMARY_METRICS = (
    "output_throughput",
    "median_ttft_ms",
    "median_tpot_ms",
    "total_token_throughput",
    "request_throughput",
)
_RANGE_METRICS = _SUMMARY_METRICS[:3]


def summarize(facts: ModelFacts, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's medians over its rounds, its cost, size and quality."""
    summary: dict[str, Any] = {"model": facts.name, "precision": facts.precision}
    summary["rounds"] = rounds
    for key in _SUMMARY_METRICS:
        summary[key] = _median([p[key] for p in rounds])
    summary["ranges"] = {
        key: _range([p[key] for p in rounds]) for key in _RANGE_METRICS
    }
    summary["completed"] = sum(p["completed"] for p in rounds)
    summary["failed"] = sum(p["failed"] for p in rounds)
    summary["usd_per_hour"] = facts.usd_per_hour
    summary["usd_per_hour_source"] = facts.usd_per_hour_source
    for kind in ("output", "input"):
        summary[f"usd_per_m_{kind}_tokens"] = _median_cost(
            rounds, f"{kind}_usd_per_mtok", facts.usd_per_hour
        )
    summary["checkpoint"] = None if facts.checkpoint is None else str(facts.checkpoint)
    summary["checkpoint_bytes"] = facts.checkpoint_bytes
    summary["quantize_report"] = (
        None if facts.report_path is None else str(facts.report_path)
    )
    summary["quantize_size"] = facts.quantize_size
    summary["quality"] = facts.quality
    return summary


def with_ratios(variants: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """`variants` with each figure's ratio to the baseline's (None if unknown)."""
    base = next(v for v in variants if v["model"] == baseline)
    pairs = {
        "throughput_ratio": "output_throughput",
        "usd_per_m_output_tokens_ratio": "usd_per_m_output_tokens",
        "checkpoint_bytes_ratio": "checkpoint_bytes",
    }
    return [
        {**v, **{ratio: _ratio(v[key], base[key]) for ratio, key in pairs.items()}}
        for v in variants
    ]


def _median(values: Sequence[float | None]) -> float | None:
    # A round's latency is None when it was not measured (no streaming, or every
    # request failed); the median is over the rounds that measured it.
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _range(values: Sequence[float | None]) -> list[float] | None:
    known = [v for v in values if v is not None]
    return [min(known), max(known)] if known else None


def _median_cost(
    rounds: Sequence[dict[str, Any]], key: str, usd_per_hour: float | None
) -> float | None:
    if usd_per_hour is None:
        return None
    # A round that produced no tokens priced them at infinity; the median keeps
    # that weight, and an infinite median is reported as unknown (JSON has no inf).
    costs = [math.inf if p[key] is None else p[key] for p in rounds]
    median = statistics.median(costs)
    return None if math.isinf(median) else median


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base
