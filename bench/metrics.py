"""A benchmark point's metrics, defined and named as `vllm bench serve` does.

- TTFT: request start to the first chunk that carries text.
- TPOT: per request with more than one output token, (E2E latency - TTFT) /
  (output tokens - 1); the first token is left out.
- ITL: the gaps between consecutive text chunks, pooled over all requests.
- E2E latency (`e2el`): request start to the end of its response.
- Throughputs divide by the point's duration: the first request sent (after
  warm-up) to the last response received. Only successful requests count.
- Goodput: successful requests per second that met every SLO given.

Each latency gets mean, median, std, p90 and p99 in milliseconds; percentiles
interpolate linearly, like numpy's default. Output tokens come from `usage`
(streams ask for it), else one per text chunk. A value that was not measured is
None (JSON null), never 0.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen import RequestResult, percentile

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (90, 99)
_MS_PER_S = 1000.0
_S_PER_HOUR = 3600.0
_TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in ms; a request is good when it meets every one."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """`ttft_ms=500,tpot_ms=50` (keys: ttft_ms, tpot_ms, e2el_ms)."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in cls.__dataclass_fields__:
                raise ValueError(
                    f"SLO item {item!r} is not KEY=MS with KEY one of ttft_ms, "
                    "tpot_ms, e2el_ms; e.g. --slo ttft_ms=500,tpot_ms=50"
                )
            try:
                values[key.strip()] = float(value)
            except ValueError:
                raise ValueError(
                    f"SLO {key.strip()} needs a number of milliseconds, got {value!r}"
                ) from None
        return cls(**values)

    def is_set(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def is_met(self, ttft_s: float | None, tpot_s: float | None, e2el_s: float) -> bool:
        limits = (
            (self.ttft_ms, ttft_s),
            (self.tpot_ms, tpot_s),
            (self.e2el_ms, e2el_s),
        )
        # A limit on a value that was not measured (TTFT without streaming) fails.
        return all(
            limit is None or (value is not None and value * _MS_PER_S <= limit)
            for limit, value in limits
        )

    def as_dict(self) -> dict[str, float]:
        values = {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms}
        values["e2el_ms"] = self.e2el_ms
        return {key: value for key, value in values.items() if value is not None}


def tpot_s(result: RequestResult) -> float | None:
    """Time per output token after the first; None for 0 or 1 output tokens."""
    if result.ttft_s is None or result.num_output_tokens <= 1:
        return None
    return (result.latency_s - result.ttft_s) / (result.num_output_tokens - 1)


def _goodput_tpot_s(result: RequestResult) -> float | None:
    if result.ttft_s is not None and result.num_output_tokens <= 1:
        return 0.0
    return tpot_s(result)


def compute_metrics(
    results: Sequence[RequestResult], duration_s: float, slo: Slo | None = None
) -> dict[str, Any]:
    """The point's metrics under vLLM's key names (plus errors and cached tokens)."""
    ok = [r for r in results if r.is_ok]
    per_s = 1 / duration_s if duration_s > 0 else 0.0
    input_tokens = [r.num_prompt_tokens for r in ok if r.num_prompt_tokens is not None]
    cached_tokens = [r.num_cached_tokens for r in ok if r.num_cached_tokens is not None]
    total_input = sum(input_tokens) if input_tokens else None
    total_cached = sum(cached_tokens) if cached_tokens else None
    total_output = sum(r.num_output_tokens for r in ok)

    metrics: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "total_cached_tokens": total_cached,
        "cached_tokens_ratio": (
            total_cached / total_input
            if total_cached is not None and total_input
            else None
        ),
        "request_throughput": len(ok) * per_s,
        "request_goodput": None,
        "output_throughput": total_output * per_s,
        "input_throughput": None if total_input is None else total_input * per_s,
        "total_token_throughput": (total_input or 0) * per_s + total_output * per_s,
        "errors_by_kind": dict(
            Counter(r.error_kind or "unknown" for r in results if not r.is_ok)
        ),
    }
    if slo is not None and slo.is_set():
        # As in vLLM, a request of 0 or 1 output tokens meets any TPOT objective.
        num_good = sum(
            slo.is_met(r.ttft_s, _goodput_tpot_s(r), r.latency_s) for r in ok
        )
        metrics["request_goodput"] = num_good * per_s

    samples_s = {
        "ttft": [r.ttft_s for r in ok if r.ttft_s is not None],
        "tpot": [t for r in ok if (t := tpot_s(r)) is not None],
        "itl": [itl for r in ok for itl in r.itl_s],
        "e2el": [r.latency_s for r in ok],
    }
    for name in LATENCY_METRICS:
        metrics.update(latency_stats_ms(name, samples_s[name]))
    return metrics


def latency_stats_ms(name: str, values_s: Sequence[float]) -> dict[str, float | None]:
    """mean/median/std/p90/p99 of `values_s` in ms, keyed like `median_ttft_ms`."""
    ordered_ms = sorted(v * _MS_PER_S for v in values_s)
    stats: dict[str, float | None] = {
        f"mean_{name}_ms": statistics.fmean(ordered_ms) if ordered_ms else None,
        f"median_{name}_ms": percentile(ordered_ms, 50),
        # Population std, as numpy's default (vLLM uses np.std).
        f"std_{name}_ms": statistics.pstdev(ordered_ms) if ordered_ms else None,
    }
    for q in PERCENTILES:
        stats[f"p{q}_{name}_ms"] = percentile(ordered_ms, q)
    return stats


def cost_metrics(
    metrics: dict[str, Any], usd_per_hour: float | None
) -> dict[str, float | None]:
    """What the hardware's hour buys at this point's throughput.

    `output_usd_per_mtok` charges the whole hour to output tokens and
    `input_usd_per_mtok` the whole hour to input tokens: each is the price of a
    token if the machine produced only that kind at this rate. `bench calibrate`
    splits the hour between the two kinds instead.
    """
    usd_per_s = None if usd_per_hour is None else usd_per_hour / _S_PER_HOUR

    def per_mtok(tokens_per_s: float | None) -> float | None:
        if usd_per_s is None or not tokens_per_s:
            return None
        return usd_per_s / tokens_per_s * _TOKENS_PER_MTOK

    return {
        "run_cost_usd": None if usd_per_s is None else usd_per_s * metrics["duration"],
        "output_usd_per_mtok": per_mtok(metrics["output_throughput"]),
        "input_usd_per_mtok": per_mtok(metrics["input_throughput"]),
        "total_usd_per_mtok": per_mtok(metrics["total_token_throughput"]),
    }
