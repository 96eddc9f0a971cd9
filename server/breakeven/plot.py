"""The break-even plot: monthly cost against monthly volume, as a PNG.

matplotlib draws through its Agg backend on a bare `Figure`, never pyplot, so it
needs no display and leaves no global state behind.
"""

from __future__ import annotations

import io

from server.breakeven.answer import Answer
from server.breakeven.cost_curve import nice_ceiling
from server.breakeven.formatting import tokens, usd

_API_COLOR = "#2f6fdf"
_SELF_COLOR = "#d9591f"
_MAX_LABELLED_STEPS = 8
_MIN_LABELLED_WIDTH = 0.08  # of the x axis: narrower steps get no label


def cost_plot_png(answer: Answer) -> bytes:
    """The API's line against self-hosting's steps, the bill and break-even marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    curve = answer.curve
    volume = answer.monthly_tokens
    break_even = answer.break_even.monthly_tokens
    x_max = nice_ceiling(max(2.5 * volume, 1.4 * (break_even or 0.0)))
    steps = curve.steps(x_max)

    figure = Figure(figsize=(8.5, 4.8), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    api_basis = "the bill's cost" if answer.api.billed_monthly_usd else "list prices"
    ax.plot(
        [0, x_max],
        [0, curve.api_usd(x_max)],
        color=_API_COLOR,
        linewidth=2,
        label=f"API ({api_basis}, the bill's mix of tokens)",
    )
    xs, ys = [], []
    for left, right, num_gpus in steps:
        cost = num_gpus * curve.usd_per_gpu_month + curve.fixed_usd_per_month
        xs += [left, right]
        ys += [cost, cost]
    ax.plot(
        xs, ys, color=_SELF_COLOR, linewidth=2, label=f"self-hosted: {answer.candidate}"
    )
    if len(steps) <= _MAX_LABELLED_STEPS:
        for left, right, num_gpus in steps:
            if right - left < _MIN_LABELLED_WIDTH * x_max:
                continue
            cost = num_gpus * curve.usd_per_gpu_month + curve.fixed_usd_per_month
            ax.annotate(
                f"{num_gpus} GPU{'s' if num_gpus > 1 else ''}",
                ((left + right) / 2, cost),
                textcoords="offset points",
                xytext=(0, 5),
                ha="center",
                fontsize=8,
                color=_SELF_COLOR,
            )

    ax.axvline(volume, color="#5b6475", linestyle=":", linewidth=1.2)
    ax.annotate(
        f"your bill: {tokens(volume)} tokens/month",
        (volume, 0.97),
        xycoords=("data", "axes fraction"),
        xytext=(4, 0),
        textcoords="offset points",
        va="top",
        fontsize=8,
        color="#5b6475",
    )
    if break_even is not None and break_even <= x_max:
        cost = curve.api_usd(break_even)
        ax.plot([break_even], [cost], "o", color="#1d2330", markersize=6)
        ax.annotate(
            f"break-even: {tokens(break_even)} tokens/month, {usd(cost)}",
            (break_even, cost),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=8,
        )

    ax.set_xlim(0, x_max)
    ax.set_ylim(0, None)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: tokens(x)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: usd(y)))
    ax.set_xlabel("monthly volume, tokens (prompt + output)")
    ax.set_ylabel("monthly cost")
    ax.set_title("Monthly cost against monthly volume", fontsize=11)
    ax.grid(True, color="#e3e7ee", linewidth=0.8)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9, edgecolor="#d8dde6")
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
