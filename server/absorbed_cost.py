"""Absorbed cost: the hardware bill divided among the requests that ran up.

List prices say what a token should cost at a reference load; the absorbed cost
says what it did cost, idle time included. The engine's uptime is cut into windows
aligned to multiples of `window_s`. Each window's bill is `usd_per_hour` times the
engine's uptime inside it, and goes to the requests active in that window in
proportion to their weight times the fraction of their duration that falls in it —
work done during a request is assumed spread evenly over its lifetime. A window
with uptime but no weighted request is idle, and its dollars are reported apart.

A request's weight is its calibrated engine-seconds (`work_s`). Without a
calibration, `request_weight` falls back to its uncached prompt tokens plus its
completion tokens; only ratios inside one window matter, so all requests passed in
one call must use the same kind of weight.

Everything here is a pure function of its arguments: no database, no clock.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

logger = logging.getLogger(__name__)

_S_PER_HOUR = 3600.0


class RequestSpan(NamedTuple):
    """One request's lifetime and weight; a plain 4-tuple works as well."""

    request_id: str
    start_s: float
    end_s: float
    weight: float


@dataclass(frozen=True)
class AbsorbedCost:
    """The bill of one engine over its uptime, and who absorbed it.

    `sum(per_request_usd.values()) + idle_usd == bill_usd` up to float rounding.
    """

    per_request_usd: dict[str, float]
    bill_usd: float
    # The part of the bill requests absorbed, and the part nobody did.
    allocated_usd: float
    idle_usd: float
    # allocated / bill: the share of paid engine time that served requests.
    utilization: float
    # Requests active at a moment the engine was not up; the part of their weight
    # that fell there absorbed nothing. Usually clock skew or missing uptime.
    outside_uptime_ids: list[str]


def request_weight(
    work_s: float | None, num_prompt: int, num_cached: int, num_completion: int
) -> float:
    """A request's weight for absorbed cost: its `work_s`, else a token count.

    The fallback counts uncached prompt tokens and completion tokens alike; that
    over-weighs long prompts (prefill is far cheaper per token than decode), which
    is why a calibration is worth running.
    """
    if work_s is not None:
        return work_s
    return float(num_prompt - num_cached + num_completion)


def allocate_absorbed_cost(
    requests: Iterable[tuple[str, float, float, float]],
    uptime: Iterable[tuple[float, float]],
    usd_per_hour: float,
    window_s: float = 60.0,
) -> AbsorbedCost:
    """Split the bill for `uptime` among `requests` (see the module docstring).

    `requests` holds `(request_id, start_s, end_s, weight)`; `uptime` holds the
    engine's `(start_s, end_s)` intervals, in the same clock (unix seconds).
    """
    if not (math.isfinite(usd_per_hour) and usd_per_hour >= 0):
        raise ValueError(
            f"usd_per_hour must be a finite number >= 0, not {usd_per_hour}"
        )
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a finite number > 0, not {window_s}")

    uptime_s = _uptime_per_window(uptime, window_s)
    weights = _weights_per_window(requests, window_s)

    per_request_usd: dict[str, float] = {}
    window_bills_usd: list[float] = []
    idle_bills_usd: list[float] = []
    outside: set[str] = set()
    for window in sorted(uptime_s.keys() | weights.keys()):
        bill_usd = usd_per_hour * uptime_s.get(window, 0.0) / _S_PER_HOUR
        shares = weights.get(window, {})
        total_weight = math.fsum(shares.values())
        if bill_usd == 0:
            outside.update(rid for rid, weight in shares.items() if weight > 0)
        window_bills_usd.append(bill_usd)
        if total_weight == 0:
            # Nobody worked in this window, zero-weight requests included.
            idle_bills_usd.append(bill_usd)
            for rid in shares:
                per_request_usd.setdefault(rid, 0.0)
            continue
        for rid, usd in _split(bill_usd, shares, total_weight).items():
            per_request_usd[rid] = per_request_usd.get(rid, 0.0) + usd

    if outside:
        logger.warning(
            "%d request(s) ran while the engine was not up, e.g. %s; their share "
            "there is unbilled",
            len(outside),
            min(outside),
        )
    bill_usd = math.fsum(window_bills_usd)
    idle_usd = math.fsum(idle_bills_usd)
    allocated_usd = math.fsum(per_request_usd.values())
    return AbsorbedCost(
        per_request_usd=per_request_usd,
        bill_usd=bill_usd,
        allocated_usd=allocated_usd,
        idle_usd=idle_usd,
        utilization=allocated_usd / bill_usd if bill_usd > 0 else 0.0,
        outside_uptime_ids=sorted(outside),
    )


def _split(
    bill_usd: float, shares: dict[str, float], total_weight: float
) -> dict[str, float]:
    """`bill_usd` in proportion to `shares`, summing to it to the last bit."""
    largest = max(shares, key=lambda rid: shares[rid])
    split_usd = {
        rid: bill_usd * weight / total_weight
        for rid, weight in shares.items()
        if rid != largest
    }
    # The largest share takes the rounding remainder, so the window's shares add
    # up to its bill; being largest, it cannot be pushed below zero.
    split_usd[largest] = bill_usd - math.fsum(split_usd.values())
    return split_usd


def _uptime_per_window(
    uptime: Iterable[tuple[float, float]], window_s: float
) -> dict[int, float]:
    # Overlapping intervals are merged: one engine is not billed twice for a second.
    merged: list[list[float]] = []
    for start_s, end_s in sorted(uptime):
        if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s >= start_s):
            raise ValueError(
                f"uptime interval ({start_s}, {end_s}) must be finite with "
                "end_s >= start_s"
            )
        if merged and start_s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end_s)
        else:
            merged.append([start_s, end_s])

    uptime_s: dict[int, float] = defaultdict(float)
    for start_s, end_s in merged:
        for window, overlap_s in _overlaps(start_s, end_s, window_s):
            uptime_s[window] += overlap_s
    return uptime_s


def _weights_per_window(
    requests: Iterable[tuple[str, float, float, float]], window_s: float
) -> dict[int, dict[str, float]]:
    weights: dict[int, dict[str, float]] = defaultdict(dict)
    seen: set[str] = set()
    for request_id, start_s, end_s, weight in requests:
        if request_id in seen:
            raise ValueError(f"request {request_id!r} appears twice")
        seen.add(request_id)
        if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s >= start_s):
            raise ValueError(
                f"request {request_id!r} spans ({start_s}, {end_s}); it must be "
                "finite with end_s >= start_s"
            )
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"request {request_id!r} has weight {weight}; it must be finite "
                "and >= 0"
            )

        duration_s = end_s - start_s
        if duration_s == 0:
            # An instant belongs whole to the window that contains it.
            weights[_window_of(start_s, window_s)][request_id] = weight
            continue
        for window, overlap_s in _overlaps(start_s, end_s, window_s):
            weights[window][request_id] = weight * overlap_s / duration_s
    return weights


def _overlaps(
    start_s: float, end_s: float, window_s: float
) -> Iterable[tuple[int, float]]:
    """The windows `[start_s, end_s)` touches, with the seconds it spends in each."""
    window = _window_of(start_s, window_s)
    while window * window_s < end_s:
        overlap_s = min(end_s, (window + 1) * window_s) - max(
            start_s, window * window_s
        )
        if overlap_s > 0:
            yield window, overlap_s
        window += 1


def _window_of(t_s: float, window_s: float) -> int:
    return math.floor(t_s / window_s)
