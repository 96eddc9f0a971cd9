"""The report written next to the checkpoint: quantize_report.json and .md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

JSON_NAME = "quantize_report.json"
MARKDOWN_NAME = "quantize_report.md"


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    json_path, md_path = directory / JSON_NAME, directory / MARKDOWN_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(to_markdown(report))
    return json_path, md_path


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a page a person reads."""
    method, size, gate = report["method"], report["size"], report["gate"]
    calibration = report["calibration"]
    lines = [
        f"# {report['name']}: {method['label']} of {report['source']['name']}",
        "",
        f"**Gate: {gate['verdict'].upper()}** — {gate['message']}",
        "",
        "| | |",
        "| --- | --- |",
        f"| method | {method['name']}: {method['summary']} |",
        f"| bits | {method['bits']} |",
        f"| group size | {method['group_size'] or 'none (per channel)'} |",
        f"| symmetric | {method['symmetric']} |",
        f"| GPTQ dampening | {method.get('gptq_dampening_frac') or 'n/a'} |",
        f"| group scales | {_SCALES.get(method.get('weight_scales'), 'n/a')} |",
        f"| calibration | {_calibration(calibration)} |",
        f"| wall time | {report['wall_s']['total']:.0f} s "
        f"(compression {report['wall_s']['compression']:.0f} s) |",
        f"| peak memory (compression) | {_gb(report['peak_rss_bytes'])} |",
        f"| size on disk | {_gb(size['before_bytes'])} → {_gb(size['after_bytes'])} "
        f"({size['ratio']:.3f} x the original) |",
        f"| engine | {report['engine']} |",
        "",
        "## Left unquantized",
        "",
        *[f"- `{name}`: {why}" for name, why in report["unquantized"].items()],
        "",
        "## Quality, measured on vLLM",
        "",
        "| text | windows x tokens | perplexity before | after | change | "
        "top-1 agreement | mean KL (nats) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for text in gate["texts"]:
        lines.append(
            f"| {text['name']} | {text['num_windows']} x {text['window_len']} | "
            f"{text['ppl_before']:.3f} | {text['ppl_after']:.3f} | "
            f"{text['ppl_increase_pct']:+.2f}% | {text['top1_agreement']:.3f} | "
            f"{text['mean_kl']:.4f} |"
        )
    lines += [
        "",
        f"Gate: perplexity increase at most {gate['max_ppl_increase_pct']:g}% on "
        "every text. KL is over the base model's top-"
        f"{gate['top_k']} tokens plus one bucket for the rest of the vocabulary.",
        "",
        *_rtn_baseline(report.get("rtn_baseline")),
        "## Greedy answers, side by side",
        "",
        *_system_prompt_line(gate.get("answers_system_prompt")),
        "| prompt | before | after |",
        "| --- | --- | --- |",
    ]
    for answer in gate["answers"]:
        lines.append(
            f"| {_cell(answer['prompt'])} | {_cell(answer['before'])} | "
            f"{_cell(answer['after'])} |"
        )
    return "\n".join(lines) + "\n"


_SCALES = {
    "minmax": "minmax: each group's full range",
    "mse": "mse: the clipped range with the least rounding error",
    "imatrix_mse": "imatrix_mse: the clipped range with the least rounding error, "
    "each input channel weighted by its mean squared calibration activation",
}


def _rtn_baseline(rtn: dict[str, Any] | None) -> list[str]:
    if not rtn:
        return []
    lines = [
        "## Against round-to-nearest (same layers, bits, groups; same run)",
        "",
        "| text | this method | round-to-nearest | ratio | round-to-nearest KL |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rtn["texts"]:
        ratio = row["increase_ratio"]
        lines.append(
            f"| {row['name']} | {row['calibrated_increase_pct']:+.2f}% | "
            f"{row['ppl_increase_pct']:+.2f}% | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {row['mean_kl']:.4f} |"
        )
    return [*lines, ""]


def _calibration(calibration: dict[str, Any]) -> str:
    if not calibration.get("num_samples"):
        return "none (data-free)"
    return (
        f"{calibration['num_samples']} samples, {calibration['num_tokens']} tokens "
        f"from {Path(calibration['path']).name}"
    )


def _gb(num_bytes: int | None) -> str:
    return "unknown" if num_bytes is None else f"{num_bytes / 1e6:.1f} MB"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _system_prompt_line(system_prompt: str | None) -> list[str]:
    if not system_prompt:
        return []
    return [
        f"Temperature 0, each prompt after the system message {system_prompt!r}.",
        "",
    ]
