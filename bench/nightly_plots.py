"""The nightly report's PNGs: throughput against latency, and figure histories.

matplotlib draws through its Agg backend on a bare `Figure`, never pyplot, so it
needs no display and leaves no global state behind.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.regression import Finding, is_baseline

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.nightly_report import BenchmarkOutcome

_NOW_COLOR = "#2f6fdf"
_PAST_COLOR = "#9aa3b2"
_REGRESSION_COLOR = "#d62728"
_IMPROVEMENT_COLOR = "#2ca02c"
_COLORS = ("#2f6fdf", "#d9591f", "#7a4fbf", "#1f9e89", "#b8860b", "#c2417f")
_NUM_PAST_CURVES = 5
_NUM_PAST_RUNS = 30
_CURVE_LATENCIES = (
    ("median_ttft_ms", "median TTFT, ms"),
    ("median_tpot_ms", "median TPOT, ms"),
)


def curve_png(outcome: BenchmarkOutcome) -> bytes:
    """Output tokens/s against median TTFT and TPOT, now and in earlier runs."""
    figure = _figure(width_in=10.0, height_in=4.2)
    past = outcome.history[:_NUM_PAST_CURVES]
    for index, (latency, title) in enumerate(_CURVE_LATENCIES):
        ax = figure.add_subplot(1, len(_CURVE_LATENCIES), index + 1)
        for age, result in enumerate(past):
            xs, ys, _ = _curve(result, latency)
            ax.plot(
                xs,
                ys,
                color=_PAST_COLOR,
                alpha=0.9 - 0.12 * age,
                linewidth=1,
                marker=".",
                label="earlier runs" if age == 0 else None,
            )
        xs, ys, labels = _curve(outcome.result, latency)
        ax.plot(xs, ys, color=_NOW_COLOR, linewidth=2, marker="o", label="this run")
        for x, y, label in zip(xs, ys, labels, strict=True):
            ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        if not xs:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center")
        ax.set_xlabel("output throughput, tokens/s")
        ax.set_ylabel(title)
        ax.set_title(f"{outcome.name}: {title.split(',')[0]}", fontsize=10)
        _style(ax, has_legend=True)
    return _png(figure)


def _curve(
    result: dict[str, Any], latency: str
) -> tuple[list[float], list[float], list[str]]:
    xs, ys, labels = [], [], []
    for point in result.get("points", []):
        x, y = point.get("output_throughput"), point.get(latency)
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
            labels.append(short_label(point["label"]))
    return xs, ys, labels


def history_png(outcome: BenchmarkOutcome, watch: Sequence[str]) -> bytes:
    """Each watched figure over the earlier comparable runs, this run starred."""
    num_cols = min(3, max(1, len(watch)))
    num_rows = math.ceil(len(watch) / num_cols) or 1
    from matplotlib.ticker import MaxNLocator

    figure = _figure(width_in=4.3 * num_cols, height_in=3.1 * num_rows)
    runs = [*reversed(outcome.history[:_NUM_PAST_RUNS]), outcome.result]
    now_x = len(runs) - 1
    findings = {(f.point, f.figure): f for f in outcome.findings}
    labels = [point["label"] for point in outcome.result["points"]]
    for index, figure_name in enumerate(watch):
        ax = figure.add_subplot(num_rows, num_cols, index + 1)
        for label, color in zip(labels, _cycle(len(labels)), strict=True):
            values = [_value(run, label, figure_name) for run in runs]
            ax.plot(
                range(len(runs)),
                values,
                color=color,
                linewidth=1.2,
                label=short_label(label),
            )
            for x, (run, value) in enumerate(zip(runs[:-1], values, strict=False)):
                if not math.isnan(value):
                    ax.plot(
                        x,
                        value,
                        color=color,
                        marker="o" if is_baseline(run) else "x",
                        markersize=4,
                    )
            finding = findings.get((label, figure_name))
            _mark_now(ax, now_x, values[-1], color, finding)
        ax.set_title(figure_name, fontsize=9)
        ax.set_xlabel("comparable runs, oldest first; star: this run", fontsize=8)
        ax.set_xlim(-0.5, now_x + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _style(ax, has_legend=index == 0)
    figure.suptitle(
        f"{outcome.name}: o accepted run, x regressed run, dashed: this run's limit",
        fontsize=10,
    )
    return _png(figure)


def _mark_now(
    ax: Axes, now_x: int, value: float, color: str, finding: Finding | None
) -> None:
    if math.isnan(value):
        return
    edge = color
    if finding is not None and finding.verdict == "regression":
        edge = _REGRESSION_COLOR
    elif finding is not None and finding.verdict == "improvement":
        edge = _IMPROVEMENT_COLOR
    ax.plot(
        now_x,
        value,
        marker="*",
        markersize=13,
        color=color,
        markeredgecolor=edge,
        markeredgewidth=1.5,
        linestyle="none",
    )
    if finding is not None and finding.limit is not None:
        start_x = max(0, now_x - len(finding.baseline))
        ax.hlines(
            finding.limit, start_x, now_x, colors=color, linestyles="dashed", alpha=0.6
        )


def _value(result: dict[str, Any], label: str, figure: str) -> float:
    for point in result.get("points", []):
        if point.get("label") == label and point.get(figure) is not None:
            return float(point[figure])
    return math.nan


def short_label(label: str) -> str:
    """`concurrency 4` as `c=4`, `rate 2/s, max 8` as `2/s, max 8`."""
    return label.replace("concurrency ", "c=").removeprefix("rate ")


def _cycle(count: int) -> list[str]:
    return [_COLORS[i % len(_COLORS)] for i in range(count)]


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _style(ax: Axes, has_legend: bool) -> None:
    ax.grid(True, color="#e3e7ee", linewidth=0.8)
    ax.tick_params(labelsize=8)
    if has_legend:
        # A fixed corner: "best" searches every artist, seconds on a long history.
        ax.legend(fontsize=7, framealpha=0.8, loc="upper left")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
