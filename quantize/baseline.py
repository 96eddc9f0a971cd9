"""Round-to-nearest at the same scheme, in the same run: what calibration bought.

A calibrated method (GPTQ, AWQ, SmoothQuant + GPTQ) costs minutes and a
calibration text; round-to-nearest costs neither. `--vs-rtn` quantizes the same
layers to the same bits, group size and symmetry by round-to-nearest, measures it
on the same windows with the same base measurement, and reports the ratio of the
two perplexity increases per text. The baseline checkpoint is discarded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from quantize import gate, toolchain
from quantize.errors import QuantizeError
from quantize.evaluation import EVAL_TEXTS, compare
from quantize.methods import METHODS, Method
from quantize.plan import Plan

# Methods whose scheme round-to-nearest reproduces exactly at the same bits:
# `rtn` at 8 bits is W8A8, so weight-only int8 (w8a16) has no like-for-like baseline.
COMPARABLE_METHODS = ("gptq", "awq", "w8a8")


def check_comparable(method: Method) -> None:
    """Refuse `--vs-rtn` where round-to-nearest would not be the same scheme."""
    if method.name not in COMPARABLE_METHODS:
        raise QuantizeError(
            f"--vs-rtn compares a calibrated method with round-to-nearest at the "
            f"same scheme, which exists for {', '.join(COMPARABLE_METHODS)}, not "
            f"{method.name}; drop --vs-rtn"
        )


def rtn_plan(plan: Plan) -> Plan:
    """`plan` by round-to-nearest: same layers, bits, groups and symmetry, no data."""
    staging = Path(plan.output_dir).parent
    return dataclasses.replace(
        plan,
        method="rtn",
        output_dir=str(staging / "rtn-checkpoint"),
        result_path=str(staging / "rtn-result.json"),
        calib_path=None,
        num_calib_samples=0,
        # Plain round-to-nearest: each group's full range, no data.
        weight_observer="minmax",
    )


def measure_rtn(
    plan: Plan, measured: dict[str, Any], home: Path, console: Console
) -> dict[str, Any]:
    """Quantize `plan` by round-to-nearest and measure it beside the calibrated one."""
    baseline = rtn_plan(plan)
    compression = toolchain.compress(baseline, console)
    settings: gate.GateSettings = measured["settings"]
    checkpoint = Path(baseline.output_dir)
    console.print("quantize: measuring the round-to-nearest baseline on vLLM")
    after = gate.measure(
        "round-to-nearest",
        checkpoint,
        gate.gate_model(
            str(checkpoint), f"int{plan.bits}", METHODS["rtn"].quantization, settings
        ),
        measured["windows"],
        settings,
        home / "logs" / "quantize-gate-rtn.log",
        console,
    )
    return {"compression_wall_s": compression.get("wall_s"), "after": after}


def summarize(
    rtn: dict[str, Any], texts: list[dict[str, Any]], measured: dict[str, Any]
) -> dict[str, Any]:
    """The baseline's quality per text, and calibrated increase / baseline increase."""
    settings: gate.GateSettings = measured["settings"]
    base, after = measured["base"], rtn["after"]
    calibrated = {text["name"]: text["ppl_increase_pct"] for text in texts}
    rows = []
    for text in EVAL_TEXTS:
        row = {
            "name": text.name,
            **compare(base.scores[text.name], after.scores[text.name], settings.top_k),
            "calibrated_increase_pct": calibrated[text.name],
        }
        rtn_increase = row["ppl_increase_pct"]
        # A ratio is only meaningful when round-to-nearest lost something.
        row["increase_ratio"] = (
            round(calibrated[text.name] / rtn_increase, 3) if rtn_increase > 0 else None
        )
        rows.append(row)
    return {
        "method": "rtn",
        "compression_wall_s": rtn["compression_wall_s"],
        "texts": rows,
        "answers": after.answers,
    }


def describe(rtn: dict[str, Any]) -> str:
    """One line per text: calibrated vs round-to-nearest increase and their ratio."""
    lines = ["vs round-to-nearest at the same scheme (same run):"]
    for row in rtn["texts"]:
        ratio = row["increase_ratio"]
        lines.append(
            f"  {row['name']}: {row['calibrated_increase_pct']:+.2f}% vs "
            f"{row['ppl_increase_pct']:+.2f}%"
            + (
                f" ({ratio:.2f}x round-to-nearest's increase)"
                if ratio is not None
                else ""
            )
        )
    return "\n".join(lines)
