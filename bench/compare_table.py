"""`bench compare`'s screen: per model its speed and cost, then its size and quality."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

_BYTES_PER_MB = 1e6  # as the quantize report writes sizes


def compare_table(result: dict[str, Any]) -> Group:
    """The trade-off on one screen: speed and cost, then size and quality."""
    config = result["config"]
    title = (
        f"bench compare vs {result['baseline']}: concurrency "
        f"{config['concurrency']}, {_amount(config)} x {config['rounds']} "
        + ("round" if config["rounds"] == 1 else "rounds")
    )
    variants = result["variants"]
    speed = _table(
        title,
        ("model", "dtype", "out tok/s", "range %", "x base", "TTFT ms", "TPOT ms",
         "errors", "$/M out", "$/M in"),
        [_speed_row(v) for v in variants],
        "medians over rounds (TTFT, TPOT: of each round's median); range: "
        "(max - min) / median of out tok/s; x base: ratio to the baseline",
    )  # fmt: skip
    quality = _table(
        None,
        ("model", "size MB", "x base", "ppl +%", "KL", "top-1", "gate"),
        [_quality_row(v) for v in variants],
        "ppl, KL, top-1: the quantize report's worst text, against its source model",
    )
    return Group(speed, quality)


def _table(
    title: str | None,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
) -> Table:
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    for index, header in enumerate(headers):
        # Figures cut short mislead: a column is never narrower than its widest
        # cell, so on a narrow screen the headers wrap instead.
        table.add_column(
            header,
            justify="left" if header in ("model", "dtype", "gate") else "right",
            min_width=max((len(row[index]) for row in rows), default=0),
        )
    for row in rows:
        table.add_row(*row)
    return table


def _speed_row(v: dict[str, Any]) -> list[str]:
    return [
        v["model"],
        v["precision"] or "-",
        _fmt(v["output_throughput"]),
        _range_pct(v["output_throughput"], v["ranges"]["output_throughput"]),
        _fmt(v["throughput_ratio"], 2),
        _fmt(v["median_ttft_ms"], 0),
        _fmt(v["median_tpot_ms"], 2),
        str(v["failed"]),
        _fmt(v["usd_per_m_output_tokens"], 3),
        _fmt(v["usd_per_m_input_tokens"], 3),
    ]


def _quality_row(v: dict[str, Any]) -> list[str]:
    size_bytes = v["checkpoint_bytes"]
    return [
        v["model"],
        _fmt(None if size_bytes is None else size_bytes / _BYTES_PER_MB),
        _fmt(v["checkpoint_bytes_ratio"], 2),
        *_quality_cells(v["quality"]),
    ]


def headline(result: dict[str, Any]) -> str:
    """One line for `bench history`: each model's throughput ratio."""
    return f"vs {result.get('baseline')}: " + ", ".join(
        f"{v['model']} {_fmt(v.get('throughput_ratio'), 2)}x out tok/s"
        for v in result.get("variants", [])
    )


def _quality_cells(quality: dict[str, Any] | None) -> list[str]:
    texts = list((quality or {}).get("texts", {}).values())
    if quality is None or not texts:
        return ["-", "-", "-", "-"]
    # The worst text of each measure: a quantization is as good as its weakest.
    return [
        f"{max(t['ppl_increase_pct'] for t in texts):+.2f}",
        f"{max(t['mean_kl'] for t in texts):.4f}",
        f"{min(t['top1_agreement'] for t in texts):.3f}",
        quality["gate_verdict"],
    ]


def _amount(config: dict[str, Any]) -> str:
    if config["num_requests"] is not None:
        return f"{config['num_requests']} requests"
    return f"{config['duration_s']:g} s"


def _range_pct(median: float | None, spread: list[float] | None) -> str:
    # One number for the noise across rounds, so the table stays one screen wide.
    if not median or spread is None:
        return "-"
    return _fmt(100 * (spread[1] - spread[0]) / median)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
