"""Noise-aware regression checks: a new run against the recent range of its history.

Method. For each benchmark point and watched figure, the baseline is the figure's
values in the last N comparable runs that were themselves accepted (no regression,
no failed requests, or accepted on purpose with `bench nightly --accept`). The new
value is a regression when it is worse than the *worst* of those N by more than X%,
and an improvement when it is better than the best by more than X%. Run-to-run
noise that stays inside the recent range therefore never trips the check, and X
covers a night noisier than the last N. With fewer than `min_history` baseline
values there is no verdict yet. Runs that regressed are not baselines, so a
regression keeps failing until it is fixed or accepted, rather than widening the
range it is judged against.

Comparable runs share the suite, benchmark, hardware and every configuration field
that shapes the load (model, endpoint, workload, request count, seed, …); the URL
and the list of points may change, and points are matched by their label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from bench.history import StoredRun
from bench.metrics import LATENCY_METRICS

Direction = Literal["higher", "lower"]
Verdict = Literal[
    "regression", "errors", "improvement", "ok", "no-baseline", "not-measured"
]
FAILING_VERDICTS: frozenset[Verdict] = frozenset({"regression", "errors"})

_THROUGHPUTS = (
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "input_throughput",
    "total_token_throughput",
)
_LATENCY_STATS = ("mean", "median", "p90", "p99")
_COSTS = ("output_usd_per_mtok", "input_usd_per_mtok", "total_usd_per_mtok")

# Which way is better for every figure a nightly suite may watch.
FIGURE_DIRECTIONS: dict[str, Direction] = {
    **dict.fromkeys(_THROUGHPUTS, "higher"),
    **{
        f"{stat}_{name}_ms": "lower"
        for name in LATENCY_METRICS
        for stat in _LATENCY_STATS
    },
    **dict.fromkeys(_COSTS, "lower"),
}
DEFAULT_WATCH = (
    "output_throughput",
    "request_throughput",
    "median_ttft_ms",
    "median_tpot_ms",
    "p99_ttft_ms",
    "p99_itl_ms",
)
# Fields of a run's config that do not change what is measured.
_INCOMPARABLE_FIELDS = frozenset({"url", "points"})


@dataclass(frozen=True)
class Policy:
    """How much history a verdict needs, and how far outside it is too far."""

    history_runs: int = 5
    tolerance_pct: float = 5.0
    min_history: int = 3
    watch: tuple[str, ...] = DEFAULT_WATCH

    def __post_init__(self) -> None:
        if not 1 <= self.min_history <= self.history_runs:
            raise ValueError(
                f"min_history must be between 1 and history_runs "
                f"({self.history_runs}), got {self.min_history}"
            )
        if self.tolerance_pct < 0:
            raise ValueError(f"tolerance_pct must be >= 0, got {self.tolerance_pct}")
        if unknown := [f for f in self.watch if f not in FIGURE_DIRECTIONS]:
            raise ValueError(
                f"cannot watch {', '.join(unknown)}; figures are "
                f"{', '.join(FIGURE_DIRECTIONS)}"
            )


@dataclass(frozen=True)
class Finding:
    """One figure at one point: the new value, its baseline, and the verdict."""

    point: str
    figure: str
    value: float | None
    # Newest first, as many as the policy's history_runs.
    baseline: tuple[float, ...]
    verdict: Verdict
    tolerance_pct: float

    @property
    def direction(self) -> Direction:
        return FIGURE_DIRECTIONS.get(self.figure, "lower")

    @property
    def is_failure(self) -> bool:
        return self.verdict in FAILING_VERDICTS

    @property
    def worst(self) -> float | None:
        if not self.baseline:
            return None
        return min(self.baseline) if self.direction == "higher" else max(self.baseline)

    @property
    def best(self) -> float | None:
        if not self.baseline:
            return None
        return max(self.baseline) if self.direction == "higher" else min(self.baseline)

    @property
    def is_judged(self) -> bool:
        """Whether the value was held against a baseline at all."""
        return self.verdict not in ("no-baseline", "not-measured", "errors")

    @property
    def limit(self) -> float | None:
        """The worst value that still passes; None when there was no verdict."""
        if (worst := self.worst) is None or not self.is_judged:
            return None
        return _shifted(worst, self.direction, -self.tolerance_pct)

    @property
    def worse_by_pct(self) -> float | None:
        """How much worse than the baseline's worst, in %; negative is better."""
        worst = self.worst
        if worst is None or self.value is None or worst == 0 or not self.is_judged:
            return None
        change_pct = (self.value - worst) / abs(worst) * 100
        return -change_pct if self.direction == "higher" else change_pct

    def describe(self) -> str:
        """One line for people: what changed, by how much, against what."""
        where = f"{self.figure} at {self.point}"
        if self.verdict == "errors":
            return f"{where}: {self.value:g} requests failed"
        if self.verdict == "no-baseline":
            return f"{where}: no baseline yet ({len(self.baseline)} comparable runs)"
        if self.verdict == "not-measured" or self.value is None:
            return f"{where}: not measured"
        runs = f"last {len(self.baseline)} runs"
        range_text = f"{min(self.baseline):.4g}..{max(self.baseline):.4g}"
        if self.verdict == "regression":
            return (
                f"{where}: {self.value:.4g} is {self.worse_by_pct:.1f}% worse than "
                f"the worst of the {runs} ({range_text}); the limit is "
                f"{self.limit:.4g}"
            )
        return f"{where}: {self.value:.4g}, {self.verdict} ({runs}: {range_text})"


def _shifted(value: float, direction: Direction, better_by_pct: float) -> float:
    """`value` moved `better_by_pct` % in the better direction (negative: worse)."""
    sign = 1 if direction == "higher" else -1
    return value * (1 + sign * better_by_pct / 100)


def judge(
    point: str,
    figure: str,
    value: float | None,
    history: Sequence[float],
    policy: Policy,
) -> Finding:
    """The verdict on one value given its history, newest first."""
    baseline = tuple(history[: policy.history_runs])
    finding = Finding(point, figure, value, baseline, "ok", policy.tolerance_pct)
    if value is None:
        return replace(finding, verdict="not-measured")
    if len(baseline) < policy.min_history:
        return replace(finding, verdict="no-baseline")

    # Compare "goodness": the value itself, or its negative when lower is better.
    direction = finding.direction
    sign = 1 if direction == "higher" else -1
    worst = min(baseline, key=lambda v: sign * v)
    best = max(baseline, key=lambda v: sign * v)
    if sign * value < sign * _shifted(worst, direction, -policy.tolerance_pct):
        return replace(finding, verdict="regression")
    if sign * value > sign * _shifted(best, direction, policy.tolerance_pct):
        return replace(finding, verdict="improvement")
    return finding


def compare_run(
    result: Mapping[str, Any],
    baseline_results: Sequence[Mapping[str, Any]],
    policy: Policy,
) -> list[Finding]:
    """Every watched figure of every point of `result`, judged against baselines.

    `baseline_results` are earlier comparable, accepted runs, newest first. A
    point with failed requests also gets an `errors` finding: a night that
    half-failed must not pass because the requests that did finish were fast.
    """
    findings = []
    for point in result["points"]:
        label = point["label"]
        if point.get("failed"):
            findings.append(
                Finding(label, "failed", point["failed"], (), "errors", 0.0)
            )
        for figure in policy.watch:
            history = figure_history(baseline_results, label, figure)
            findings.append(judge(label, figure, point.get(figure), history, policy))
    return findings


def figure_history(
    results: Iterable[Mapping[str, Any]], label: str, figure: str
) -> list[float]:
    """`figure` at point `label` in each of `results` that measured it, in order."""
    values = []
    for result in results:
        for point in result.get("points", []):
            if point.get("label") == label and point.get(figure) is not None:
                values.append(float(point[figure]))
                break
    return values


def comparable_key(result: Mapping[str, Any]) -> dict[str, Any]:
    """What two runs must share for their figures to be compared."""
    config = result.get("config") or {}
    environment = result.get("environment") or {}
    return {
        "hardware": environment.get("hardware"),
        **{k: v for k, v in config.items() if k not in _INCOMPARABLE_FIELDS},
    }


def comparable_runs(
    runs: Iterable[StoredRun], result: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The results among `runs` comparable with `result`, in the order given."""
    key = comparable_key(result)
    return [run.result for run in runs if comparable_key(run.result) == key]


def is_baseline(result: Mapping[str, Any]) -> bool:
    """Whether a stored nightly run may serve as a baseline for later ones."""
    return bool((result.get("nightly") or {}).get("is_baseline"))
