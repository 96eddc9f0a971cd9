"""Monthly cost against monthly token volume: the API's line, self-hosting's steps.

The bill's mix of prompt, cached and output tokens is kept as volume scales, so
the API costs a fixed price per token, and self-hosting costs whole GPUs — one
more each time the busiest hour outgrows the fleet — plus a fixed overhead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from server.breakeven.hosting import FleetPolicy

_MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class BreakEvenVolume:
    """Where self-hosting becomes cheaper for good, in tokens a month."""

    monthly_tokens: float | None
    # The first volume at which it is cheaper, if that is lower: just after one
    # GPU is added, the API can win again for a while.
    first_monthly_tokens: float | None
    reason: str


@dataclass(frozen=True)
class CostCurve:
    """The two monthly costs as functions of monthly tokens (the bill's mix)."""

    api_usd_per_token: float
    # GPUs busy in the busiest hour per monthly token.
    peak_busy_gpus_per_token: float
    fleet: FleetPolicy
    # Hardware plus any overhead charged as a share of it, per GPU and month.
    usd_per_gpu_month: float
    fixed_usd_per_month: float

    @property
    def tokens_per_gpu_month(self) -> float:
        """Monthly tokens one GPU carries when the busiest hour fills it to headroom."""
        return self.fleet.headroom / self.peak_busy_gpus_per_token

    def num_gpus(self, monthly_tokens: float) -> int:
        return self.fleet.num_gpus(monthly_tokens * self.peak_busy_gpus_per_token)

    def api_usd(self, monthly_tokens: float) -> float:
        return self.api_usd_per_token * monthly_tokens

    def self_hosted_usd(self, monthly_tokens: float) -> float:
        num_gpus = self.num_gpus(monthly_tokens)
        return num_gpus * self.usd_per_gpu_month + self.fixed_usd_per_month

    def steps(self, max_monthly_tokens: float) -> list[tuple[float, float, int]]:
        """(from tokens, to tokens, GPUs) for each fleet size up to the volume."""
        result = []
        for left, right, num_gpus in self._steps():
            result.append((left, min(right, max_monthly_tokens), num_gpus))
            if right >= max_monthly_tokens or len(result) >= _MAX_STEPS:
                return result
        return result

    def break_even(self) -> BreakEvenVolume:
        per_gpu_tokens = self.tokens_per_gpu_month
        api_usd_per_gpu = self.api_usd_per_token * per_gpu_tokens
        margin_usd = api_usd_per_gpu - self.usd_per_gpu_month
        if margin_usd <= 0:
            return BreakEvenVolume(
                None,
                None,
                f"never: a full GPU carries {per_gpu_tokens / 1e9:,.2f}B tokens a "
                f"month, worth ${api_usd_per_gpu:,.0f} at the API's prices, and "
                f"costs ${self.usd_per_gpu_month:,.0f}",
            )
        # From this fleet size on, each step is cheaper than the API from its
        # first token: a(n - r)V ≥ cn + fixed.
        step = self.fleet.gpus_per_replica
        last_gpus = (self.fixed_usd_per_month + api_usd_per_gpu * step) / margin_usd
        if last_gpus / step > _MAX_STEPS:
            return BreakEvenVolume(
                None, None, f"only beyond {_MAX_STEPS:,} replicas; treat as never"
            )
        stays_from, first = 0.0, None
        for left, right, num_gpus in self._steps():
            crossing = (
                num_gpus * self.usd_per_gpu_month + self.fixed_usd_per_month
            ) / (self.api_usd_per_token)
            if crossing > left:
                stays_from = min(crossing, right)
            if first is None and crossing <= right:
                first = max(crossing, left)
            if num_gpus >= last_gpus:
                break
        return BreakEvenVolume(
            stays_from,
            first if first is not None and first < stays_from else None,
            "",
        )

    def _steps(self) -> Iterator[tuple[float, float, int]]:
        step = self.fleet.gpus_per_replica
        num_gpus = self.fleet.min_replicas * step
        left = 0.0
        while True:
            right = num_gpus * self.tokens_per_gpu_month
            yield left, right, num_gpus
            left, num_gpus = right, num_gpus + step


def nice_ceiling(value: float) -> float:
    """The next 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)
