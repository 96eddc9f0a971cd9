"""The traffic a bill describes: token counts by model and time bucket.

Every bill format is read into the same shape. Prompt tokens follow the
convention of `server.pricing`: `num_prompt_tokens` counts *all* input tokens, and
cache reads and cache writes are subsets of it, so a row with 1,000 prompt tokens,
800 cache reads and 100 cache writes has 100 plain (uncached) input tokens.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from server.breakeven.errors import BreakEvenError

HOURS_PER_MONTH = 730.0  # 8,760 h / 12: the month cloud GPU prices are quoted in
S_PER_MONTH = HOURS_PER_MONTH * 3600
# A measured peak-to-average needs at least a day of hourly buckets; a busiest
# *day* against the average day hides the daily cycle, which is what matters.
_MIN_HOURS_FOR_PEAK = 24


@dataclass(frozen=True)
class UsageLine:
    """One bill row: what one model used in one time bucket (or one month)."""

    model: str
    num_prompt_tokens: int
    num_cached_tokens: int = 0
    num_cache_write_tokens: int = 0  # written to a 5-minute cache (Anthropic)
    num_cache_write_1h_tokens: int = 0  # written to a 1-hour cache (Anthropic)
    num_output_tokens: int = 0
    num_requests: int | None = None
    num_successful: int | None = None
    is_batch: bool = False
    billed_cost_usd: float | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        counts = {
            "num_prompt_tokens": self.num_prompt_tokens,
            "num_cached_tokens": self.num_cached_tokens,
            "num_cache_write_tokens": self.num_cache_write_tokens,
            "num_cache_write_1h_tokens": self.num_cache_write_1h_tokens,
            "num_output_tokens": self.num_output_tokens,
        }
        if negative := {k: v for k, v in counts.items() if v < 0}:
            raise BreakEvenError(
                f"model {self.model!r}: negative token counts {negative}"
            )
        if self.num_uncached_tokens < 0:
            num_writes = self.num_cache_write_tokens + self.num_cache_write_1h_tokens
            raise BreakEvenError(
                f"model {self.model!r}: cache reads ({self.num_cached_tokens}) and "
                f"writes ({num_writes}) exceed the {self.num_prompt_tokens} prompt "
                "tokens they are part of"
            )

    @property
    def num_uncached_tokens(self) -> int:
        """Prompt tokens neither read from nor written to a cache."""
        return (
            self.num_prompt_tokens
            - self.num_cached_tokens
            - self.num_cache_write_tokens
            - self.num_cache_write_1h_tokens
        )

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_output_tokens

    def split(self, share: float) -> tuple[UsageLine, UsageLine]:
        """This line cut in two: `share` of every count, and the rest."""
        part = self.scaled(share)
        rest: dict[str, Any] = {
            name: None if value is None else value - (getattr(part, name) or 0)
            for name, value in self._counts().items()
        }
        if self.billed_cost_usd is not None:
            rest["billed_cost_usd"] = self.billed_cost_usd - (
                part.billed_cost_usd or 0.0
            )
        return part, dataclasses.replace(self, **rest)

    def scaled(self, factor: float, *, prompt_only: bool = False) -> UsageLine:
        """Every count times `factor`, rounded; only prompt tokens if `prompt_only`."""
        counts: dict[str, Any] = {
            name: None if value is None else round(value * factor)
            for name, value in self._counts().items()
            if not prompt_only or name in _PROMPT_PARTS
        }
        # The prompt is the sum of its rounded parts, so they never exceed it.
        counts["num_prompt_tokens"] = sum(
            counts[name] for name in _PROMPT_PARTS[1:]
        ) + round(self.num_uncached_tokens * factor)
        if self.billed_cost_usd is not None and not prompt_only:
            counts["billed_cost_usd"] = self.billed_cost_usd * factor
        return dataclasses.replace(self, **counts)

    def _counts(self) -> dict[str, int | None]:
        return {
            "num_prompt_tokens": self.num_prompt_tokens,
            "num_cached_tokens": self.num_cached_tokens,
            "num_cache_write_tokens": self.num_cache_write_tokens,
            "num_cache_write_1h_tokens": self.num_cache_write_1h_tokens,
            "num_output_tokens": self.num_output_tokens,
            "num_requests": self.num_requests,
            "num_successful": self.num_successful,
        }


_PROMPT_PARTS = (
    "num_prompt_tokens",
    "num_cached_tokens",
    "num_cache_write_tokens",
    "num_cache_write_1h_tokens",
)


@dataclass
class Bill:
    """A bill read from a file or the ledger, and the span of time it covers."""

    source: str
    format: str
    lines: list[UsageLine]
    num_months: float
    start: datetime | None = None
    end: datetime | None = None
    # What the reader could not read, guessed or skipped, for the report.
    notes: list[str] = field(default_factory=list)
    # Busiest hour over the mean hour, when the bill has hourly (or finer) buckets.
    measured_peak_to_average: float | None = None
    # Set by readers that know success another way than per line (ledger feedback).
    measured_success_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.lines:
            raise BreakEvenError(
                f"{self.source}: the bill has no usage rows; check that it is the "
                "right file and that its period had traffic"
            )
        if self.num_months <= 0:
            raise BreakEvenError(
                f"{self.source}: the bill covers {self.num_months} months; pass "
                "--months with the length of its period"
            )

    @classmethod
    def spanning(
        cls,
        source: str,
        format: str,
        lines: list[UsageLine],
        start: datetime,
        end: datetime,
        notes: list[str],
        measured_success_rate: float | None = None,
    ) -> Bill:
        """A bill whose months and peak-to-average come from its time buckets."""
        return cls(
            source=source,
            format=format,
            lines=lines,
            num_months=months_between(start, end),
            start=start,
            end=end,
            notes=notes,
            measured_peak_to_average=peak_to_average(lines),
            measured_success_rate=measured_success_rate,
        )

    def with_lines(self, lines: list[UsageLine]) -> Bill:
        return dataclasses.replace(self, lines=lines, notes=list(self.notes))

    def monthly(self, count: int | float) -> float:
        """A count over the bill's whole span, as a monthly figure."""
        return count / self.num_months

    @property
    def num_requests(self) -> int | None:
        return _total(line.num_requests for line in self.lines)

    @property
    def success_rate(self) -> float | None:
        """Successful over all requests: measured, or from lines that know both."""
        if self.measured_success_rate is not None:
            return self.measured_success_rate
        num_successful = _total(line.num_successful for line in self.lines)
        num_requests = self.num_requests
        if num_successful is None or not num_requests:
            return None
        return num_successful / num_requests

    @property
    def models(self) -> list[str]:
        return sorted({line.model for line in self.lines})


def _total(counts: Iterable[int | None]) -> int | None:
    """The sum, or None if any count is unknown."""
    total = 0
    for count in counts:
        if count is None:
            return None
        total += count
    return total


def months_between(start: datetime, end: datetime) -> float:
    """The span from `start` to `end` in months of 730 hours."""
    return (end - start).total_seconds() / S_PER_MONTH


def span(lines: Iterable[UsageLine]) -> tuple[datetime | None, datetime | None]:
    """The earliest bucket start and the latest bucket end."""
    starts = [line.start for line in lines if line.start is not None]
    ends = [line.end for line in lines if line.end is not None]
    return (min(starts) if starts else None, max(ends) if ends else None)


def peak_to_average(lines: Iterable[UsageLine]) -> float | None:
    """The busiest hour's tokens over the mean hour's, from buckets of ≤ 1 hour.

    Batch traffic is left out: it can run whenever the fleet is quiet. Hours
    without any row count as idle hours of the span. None when buckets are
    longer than an hour or the span is shorter than a day.
    """
    tokens_by_hour: dict[datetime, int] = defaultdict(int)
    lines = list(lines)
    for line in lines:
        if line.start is None or line.end is None:
            return None
        if line.end - line.start > timedelta(hours=1):
            return None
        if line.is_batch:
            continue
        tokens_by_hour[line.start.replace(minute=0, second=0, microsecond=0)] += (
            line.num_tokens
        )
    first, last = span(lines)
    if first is None or last is None or not tokens_by_hour:
        return None
    num_hours = (last - first).total_seconds() / 3600
    if num_hours < _MIN_HOURS_FOR_PEAK:
        return None
    mean = sum(tokens_by_hour.values()) / num_hours
    return max(tokens_by_hour.values()) / mean if mean > 0 else None
