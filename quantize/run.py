"""One `quantize` run, step by step: check, compress, measure, report, register."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quantize import baseline, gate, preflight, report, toolchain
from quantize.errors import GateFailed, QuantizeError
from quantize.evaluation import EVAL_TEXTS, compare
from quantize.layers import NOT_LINEAR, unquantized_modules
from quantize.methods import Method
from quantize.model_source import (
    SourceModel,
    checkpoint_size_bytes,
    choose_group_size,
    resolve,
)
from quantize.plan import Plan
from quantize.register import register
from server.config import ModelConfig
from server.settings import Settings


def run(args: argparse.Namespace, console: Console) -> None:
    from quantize.cli import DEFAULT_MAX_PPL_INCREASE_PCT

    started_s = time.monotonic()
    settings = Settings.from_env(home=args.home, config=args.config)
    method = preflight.choose_method(args.bits, args.method)
    if args.vs_rtn:
        baseline.check_comparable(method)
    preflight.check_hardware(method)
    source = resolve(args.model, settings.config, settings.home)
    group_size = _group_size(method, args.bits, source, args.group_size)
    symmetric = args.bits == 8 or (args.symmetric and method.name != "awq")
    calib_path = _calib_path(method, args.calib)
    weight_observer = _weight_observer(method, group_size, args.weight_scales)
    max_increase_pct = (
        args.max_ppl_increase
        if args.max_ppl_increase is not None
        else DEFAULT_MAX_PPL_INCREASE_PCT[args.bits]
    )
    label = method.label(args.bits, group_size)
    if group_size and symmetric:
        label += "-sym"
    name = args.name or f"{source.name}-{label}".lower()
    output = (args.output or settings.home / "models" / name).expanduser().resolve()
    _check_output(output, args.force)
    preflight.check_resources(source.size_bytes(), output.parent)
    console.print(
        f"quantize: {source.name} ({source.checkpoint}) -> {output}\n"
        f"  method {method.name}, {args.bits} bits"
        + (f", group size {group_size}" if group_size else "")
        + f"; gate: perplexity increase ≤ {max_increase_pct:g}%"
    )

    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        plan = _plan(
            method,
            args,
            source,
            staging,
            group_size,
            symmetric,
            calib_path,
            weight_observer,
        )
        compression = (
            toolchain.compress(plan, console) if method.is_offline else _NOT_COMPRESSED
        )
        console.print("quantize: measuring base and quantized model on vLLM")
        quantized_dir = Path(plan.output_dir) if method.is_offline else None
        measured = _measure(source, method, args, quantized_dir, settings.home, console)
        if args.vs_rtn:
            measured["rtn"] = baseline.measure_rtn(
                plan, measured, settings.home, console
            )
        _install(quantized_dir, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    after_dir = output if method.is_offline else source.checkpoint
    result = _build_report(
        name,
        source,
        method,
        args.bits,
        group_size,
        symmetric,
        compression,
        measured,
        after_dir,
        max_increase_pct,
        time.monotonic() - started_s,
    )
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report.write(result, output)
    _print_summary(result, console)
    console.print(f"quantize: report at {md_path} and {json_path.name}")
    if result["gate"]["verdict"] != "pass":
        raise GateFailed(result["gate"]["message"] + "; not registered")
    if args.register:
        register(settings.config, result["models_yaml_entry"])
        console.print(f"quantize: registered {name!r} in {settings.config}")


_NOT_COMPRESSED: dict[str, Any] = {
    "wall_s": 0.0,
    "peak_rss_bytes": None,
    "calibration": {},
}


def _group_size(
    method: Method, bits: int, source: SourceModel, requested: int | None
) -> int | None:
    if method.is_grouped and bits == 4:
        return choose_group_size(source, requested)
    if requested is not None:
        raise QuantizeError(
            f"method {method.name} at {bits} bits quantizes per channel, without "
            "groups; drop --group-size"
        )
    return None


def _weight_observer(
    method: Method, group_size: int | None, requested: str | None
) -> str:
    from quantize.cli import default_weight_observer

    if group_size is None:
        if requested is not None:
            raise QuantizeError(
                f"--weight-scales chooses 4-bit group scales; method {method.name} "
                "at these bits has none, so drop --weight-scales"
            )
        return "minmax"
    if requested == "imatrix_mse" and not method.needs_calibration:
        raise QuantizeError(
            f"--weight-scales imatrix_mse weighs errors by calibration activations, "
            f"and {method.name} reads no calibration data; use mse or minmax"
        )
    return requested or default_weight_observer(method.needs_calibration)


def _calib_path(method: Method, calib: Path | None) -> Path | None:
    if calib is None:
        return None
    if not method.needs_calibration:
        raise QuantizeError(
            f"method {method.name} uses no calibration data; drop --calib, or pick a "
            "calibrated method (w8a8, gptq, awq)"
        )
    if not calib.is_file():
        raise QuantizeError(f"--calib {calib}: no such file; pass a .txt or .jsonl")
    return calib.resolve()


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and any(output.iterdir()) and not force:
        raise QuantizeError(
            f"{output} already exists; pass --force to replace it, or -o another "
            "directory"
        )


def _plan(
    method: Method,
    args: argparse.Namespace,
    source: SourceModel,
    staging: Path,
    group_size: int | None,
    symmetric: bool,
    calib_path: Path | None,
    weight_observer: str,
) -> Plan:
    from quantize.cli import DEFAULT_DAMPENING_FRAC

    return Plan(
        method=method.name,
        bits=args.bits,
        source_dir=str(source.checkpoint),
        output_dir=str(staging / "checkpoint"),
        result_path=str(staging / "result.json"),
        group_size=group_size,
        symmetric=symmetric,
        calib_path=str(calib_path) if calib_path else None,
        num_calib_samples=args.calib_samples,
        calib_seq_len=args.calib_seq_len,
        ignore=unquantized_modules(method, args.bits),
        dampening_frac=(
            args.dampening_frac
            if args.dampening_frac is not None
            else DEFAULT_DAMPENING_FRAC[args.bits]
        ),
        weight_observer=weight_observer,
    )


def _measure(
    source: SourceModel,
    method: Method,
    args: argparse.Namespace,
    quantized_dir: Path | None,
    home: Path,
    console: Console,
) -> dict[str, Any]:
    settings = gate.GateSettings(num_windows=args.eval_windows)
    base_precision = source.entry.precision if source.entry else "bf16"
    windows = gate.token_windows(source.checkpoint, settings)
    after_dir = quantized_dir or source.checkpoint
    if quantized_dir is not None and gate.token_windows(after_dir, settings) != windows:
        raise QuantizeError(
            f"the quantized checkpoint's tokenizer differs from {source.checkpoint}'s, "
            "so perplexities would not compare; report this as a bug"
        )
    logs = home / "logs"
    base = gate.measure(
        "base",
        source.checkpoint,
        gate.gate_model(str(source.checkpoint), base_precision, None, settings),
        windows,
        settings,
        logs / "quantize-gate-base.log",
        console,
        cache_dir=home / "quantize" / "gate-cache",
    )
    after = gate.measure(
        "quantized",
        after_dir,
        gate.gate_model(
            str(after_dir), method.precision(args.bits), method.quantization, settings
        ),
        windows,
        settings,
        logs / "quantize-gate-quantized.log",
        console,
    )
    return {"settings": settings, "base": base, "after": after, "windows": windows}


def _install(quantized_dir: Path | None, output: Path) -> None:
    if quantized_dir is None:
        return
    if output.exists():
        shutil.rmtree(output)
    # mkdtemp makes the directory 0700 and transformers writes weights 0600; an
    # engine running as another user (a container) must still read them.
    quantized_dir.chmod(0o755)
    for path in quantized_dir.iterdir():
        path.chmod(0o644)
    quantized_dir.rename(output)


def _build_report(
    name: str,
    source: SourceModel,
    method: Method,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    compression: dict[str, Any],
    measured: dict[str, Any],
    after_dir: Path,
    max_increase_pct: float,
    total_s: float,
) -> dict[str, Any]:
    settings: gate.GateSettings = measured["settings"]
    base, after = measured["base"], measured["after"]
    texts: list[dict[str, Any]] = []
    for text in EVAL_TEXTS:
        texts.append(
            {
                "name": text.name,
                "description": text.description,
                "num_windows": len(base.scores[text.name]),
                "window_len": settings.window_len,
                **compare(
                    base.scores[text.name], after.scores[text.name], settings.top_k
                ),
            }
        )
    failing = [t for t in texts if t["ppl_increase_pct"] > max_increase_pct]
    if failing:
        message = "; ".join(
            f"perplexity on {t['name']} rose {t['ppl_increase_pct']:.2f}% "
            f"({t['ppl_before']:.2f} -> {t['ppl_after']:.2f}), above the allowed "
            f"{max_increase_pct:g}%"
            for t in failing
        ) + (
            "; try a calibrated method, a smaller group size, 8 bits, or raise "
            "--max-ppl-increase if that loss is acceptable"
        )
    else:
        worst = max(t["ppl_increase_pct"] for t in texts)
        message = (
            f"worst perplexity increase {worst:+.2f}% ≤ {max_increase_pct:g}% "
            f"on {len(texts)} texts"
        )
    before_bytes = source.size_bytes()
    after_bytes = checkpoint_size_bytes(after_dir)
    entry: dict[str, Any] = {
        "name": name,
        "source": str(after_dir),
        "precision": method.precision(bits),
        "quantization": method.quantization,
    }
    if source.entry is not None:
        entry["engine"] = source.entry.engine.model_dump(exclude_defaults=True)
        if source.entry.hardware is not None:
            entry["hardware"] = source.entry.hardware.model_dump()
    ModelConfig.model_validate(entry)
    return {
        "name": name,
        "source": {"name": source.name, "checkpoint": str(source.checkpoint)},
        "checkpoint": str(after_dir),
        "method": {
            "name": method.name,
            "label": method.label(bits, group_size),
            "summary": method.summary,
            "bits": bits,
            "group_size": group_size,
            "symmetric": symmetric,
            "gptq_dampening_frac": compression.get("dampening_frac"),
            "weight_scales": compression.get("weight_observer"),
        },
        "unquantized": {
            **(unquantized_modules(method, bits) if method.is_offline else {}),
            "embed_tokens, *norm": NOT_LINEAR,
        },
        "calibration": compression.get("calibration", {}),
        "wall_s": {
            "total": round(total_s, 1),
            "compression": compression.get("wall_s", 0.0),
            "engine_start_after": after.engine_start_s,
        },
        "peak_rss_bytes": compression.get("peak_rss_bytes"),
        "size": {
            "before_bytes": before_bytes,
            "after_bytes": after_bytes,
            "ratio": round(after_bytes / before_bytes, 4),
        },
        "engine": gate.vllm_version(),
        "toolchain_versions": compression.get("versions", {}),
        "gate": {
            "verdict": "fail" if failing else "pass",
            "message": message,
            "max_ppl_increase_pct": max_increase_pct,
            "top_k": settings.top_k,
            "texts": texts,
            "answers_system_prompt": gate.GREEDY_SYSTEM_PROMPT,
            "answers": [
                {"prompt": prompt, "before": before, "after": answer}
                for prompt, before, answer in zip(
                    gate.GREEDY_PROMPTS, base.answers, after.answers, strict=True
                )
            ],
        },
        "models_yaml_entry": entry,
        "rtn_baseline": (
            baseline.summarize(measured["rtn"], texts, measured)
            if "rtn" in measured
            else None
        ),
    }


def _print_summary(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{result['name']} ({result['method']['label']})")
    for column in ("text", "ppl before", "ppl after", "change", "top-1 agree", "KL"):
        table.add_column(column, justify="right" if column != "text" else "left")
    for text in result["gate"]["texts"]:
        table.add_row(
            text["name"],
            f"{text['ppl_before']:.3f}",
            f"{text['ppl_after']:.3f}",
            f"{text['ppl_increase_pct']:+.2f}%",
            f"{text['top1_agreement']:.3f}",
            f"{text['mean_kl']:.4f}",
        )
    console.print(table)
    rtn = result.get("rtn_baseline")
    if rtn:
        console.print(baseline.describe(rtn), markup=False)
    size = result["size"]
    console.print(
        f"size {size['before_bytes'] / 1e6:.1f} MB -> {size['after_bytes'] / 1e6:.1f} "
        f"MB ({size['ratio']:.3f}x); gate {result['gate']['verdict'].upper()}: "
        f"{result['gate']['message']}",
        markup=False,
    )
