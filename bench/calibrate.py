"""`bench calibrate MODEL`: engine-seconds per prompt and per completion token.

Method. A short design of synthetic workloads with different prompt and output
lengths (default five: 64 or 512 prompt tokens x 16 or 128 output tokens, and a
centre point) runs one after another, each closed-loop at the reference
concurrency with `ignore_eos`, after a warm-up. For design point k the engine was
busy for the batch's wall time T_k, shared by its n_k requests — at concurrency c
each in-flight request holds 1/c of the engine, which over the batch sums to T_k —
so one request cost y_k = T_k / n_k engine-seconds. With P_k and C_k the mean
prompt and completion tokens per request (from `usage`), least squares fits

    y_k ~ a * P_k + b * C_k

with a, b >= 0, minimizing relative errors ((fit - y_k) / y_k) so that short and
long requests weigh the same. a and b are the calibration's `prompt_s_per_token`
and `completion_s_per_token`; the RMS relative residual says how well two numbers
describe this engine (under ~10% they do; over ~25% the engine's cost is not
linear in tokens at this load, e.g. batching effects, and prices are rough).
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.loadgen import LoadGenerator
from bench.runner import Point, Target, run_point
from bench.workloads import SyntheticWorkload
from server.calibration import Calibration, calibration_path, save_calibration

_S_PER_HOUR = 3600.0
_TOKENS_PER_MTOK = 1_000_000
_POOR_FIT_REL_RMS = 0.25
_MIN_FIT_POINTS = 3


class CalibrationFitError(ValueError):
    """The design's measurements cannot determine both coefficients."""


@dataclass(frozen=True)
class DesignPoint:
    prompt_len: int
    output_len: int


@dataclass(frozen=True)
class FitPoint:
    """One measured design point: mean tokens and engine-seconds per request."""

    prompt_tokens: float
    completion_tokens: float
    engine_s: float


@dataclass(frozen=True)
class Fit:
    prompt_s_per_token: float
    completion_s_per_token: float
    residual_rel_rms: float
    num_points: int

    def predict_s(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            self.prompt_s_per_token * prompt_tokens
            + self.completion_s_per_token * completion_tokens
        )


def parse_design(text: str) -> list[DesignPoint]:
    """`64:16,512:128` as design points of prompt:output tokens."""
    points = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        prompt, sep, output = item.partition(":")
        try:
            point = DesignPoint(int(prompt), int(output))
        except ValueError:
            point = DesignPoint(0, 0)
        if not sep or point.prompt_len < 1 or point.output_len < 1:
            raise ValueError(
                f"design point {item!r} is not PROMPT:OUTPUT in tokens, both >= 1; "
                "e.g. --design 64:16,64:128,512:16,512:128"
            )
        points.append(point)
    if len(points) < _MIN_FIT_POINTS:
        raise ValueError(
            f"--design has {len(points)} points; give at least {_MIN_FIT_POINTS} "
            "so that the fit's residual means something"
        )
    return points


def fit_engine_seconds(points: Sequence[FitPoint]) -> Fit:
    """Least squares in relative error of y = a P + b C with a, b >= 0."""
    usable = [p for p in points if p.engine_s > 0]
    if len(usable) < _MIN_FIT_POINTS:
        raise CalibrationFitError(
            f"only {len(usable)} design points completed requests; need "
            f"{_MIN_FIT_POINTS}. Check the errors above, then rerun"
        )
    # Dividing each row by y_k turns relative errors into ordinary ones.
    rows = [
        (p.prompt_tokens / p.engine_s, p.completion_tokens / p.engine_s) for p in usable
    ]
    candidates = []
    if min(both := _solve_two(rows)) >= 0:
        candidates.append(both)
    else:
        # The unconstrained optimum is outside a, b >= 0, so the constrained one
        # lies on an edge: one coefficient is 0.
        candidates += [(_solve_one([r[0] for r in rows]), 0.0)]
        candidates += [(0.0, _solve_one([r[1] for r in rows]))]
    a, b = min(candidates, key=lambda ab: _sum_sq(rows, *ab))
    residual = math.sqrt(_sum_sq(rows, a, b) / len(rows))
    return Fit(a, b, residual, len(usable))


def _solve_two(rows: Sequence[tuple[float, float]]) -> tuple[float, float]:
    # Normal equations of min sum (x1 a + x2 b - 1)^2.
    s11 = sum(x1 * x1 for x1, _ in rows)
    s12 = sum(x1 * x2 for x1, x2 in rows)
    s22 = sum(x2 * x2 for _, x2 in rows)
    t1 = sum(x1 for x1, _ in rows)
    t2 = sum(x2 for _, x2 in rows)
    determinant = s11 * s22 - s12 * s12
    if determinant <= 1e-12 * s11 * s22:
        raise CalibrationFitError(
            "the design's prompt and output lengths vary together, so the fit "
            "cannot tell prompt from completion cost; vary them independently, "
            "e.g. --design 64:16,64:128,512:16,512:128"
        )
    return (t1 * s22 - t2 * s12) / determinant, (t2 * s11 - t1 * s12) / determinant


def _solve_one(xs: Sequence[float]) -> float:
    squares = sum(x * x for x in xs)
    return max(0.0, sum(xs) / squares) if squares else 0.0


def _sum_sq(rows: Sequence[tuple[float, float]], a: float, b: float) -> float:
    return sum((x1 * a + x2 * b - 1) ** 2 for x1, x2 in rows)


async def measure_design(
    target: Target,
    design: Sequence[DesignPoint],
    concurrency: int,
    num_requests: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run every design point closed-loop at `concurrency`; one dict per point."""
    measured = []
    async with LoadGenerator() as generator:
        for point in design:
            workload = SyntheticWorkload(point.prompt_len, point.output_len, seed=seed)
            run = await run_point(
                generator,
                target,
                workload,
                Point("concurrency", concurrency),
                num_requests=num_requests,
                num_warmup=concurrency,
                seed=seed,
            )
            ok = [r for r in run.results if r.is_ok]
            prompts = [r.num_prompt_tokens or 0 for r in ok]
            completions = [r.num_output_tokens for r in ok]
            measured.append(
                {
                    "prompt_len": point.prompt_len,
                    "output_len": point.output_len,
                    "completed": len(ok),
                    "failed": len(run.results) - len(ok),
                    "duration_s": run.duration_s,
                    "mean_prompt_tokens": sum(prompts) / len(ok) if ok else None,
                    "mean_completion_tokens": (
                        sum(completions) / len(ok) if ok else None
                    ),
                    "engine_s_per_request": run.duration_s / len(ok) if ok else None,
                }
            )
    return measured


def fit_points(measured: Sequence[dict[str, Any]]) -> list[FitPoint]:
    return [
        FitPoint(
            m["mean_prompt_tokens"],
            m["mean_completion_tokens"],
            m["engine_s_per_request"],
        )
        for m in measured
        if m["completed"]
    ]


def calibrate_command(args: argparse.Namespace, console: Console) -> int:
    """`bench calibrate`: measure, fit, report, write the calibration file."""
    from bench.cli import UsageError, environment, finish, target_from
    from bench.environment import default_home

    if not args.hardware:
        raise UsageError(
            "--hardware is required: the calibration holds for one machine; name "
            "it as models.yaml's hardware.name, e.g. --hardware cpu-2core"
        )
    if args.reference_concurrency < 1:
        raise UsageError(
            f"--reference-concurrency must be >= 1, got {args.reference_concurrency}"
        )
    design = parse_design(args.design)
    num_requests = args.requests_per_point or 2 * args.reference_concurrency
    path = calibration_path(args.home or default_home(), args.model)
    target = target_from(args, args.served_model or args.model, ignore_eos=True)

    measured = asyncio.run(
        measure_design(
            target, design, args.reference_concurrency, num_requests, args.seed
        )
    )
    fit = fit_engine_seconds(fit_points(measured))
    env = environment(args, target)
    calibration = Calibration(
        model=args.model,
        hardware=args.hardware,
        prompt_s_per_token=fit.prompt_s_per_token,
        completion_s_per_token=fit.completion_s_per_token,
        reference_concurrency=args.reference_concurrency,
        fit_residual_rel_rms=fit.residual_rel_rms,
        num_fit_points=fit.num_points,
        created_at=datetime.now(UTC),
        tokenmill_version=env["tokenmill_version"],
        engine_version=env["engine_version"] or "unknown",
    )

    console.print(_design_table(measured, fit))
    _print_fit(fit, args.usd_per_hour, console)
    if not args.dry_run:
        save_calibration(calibration, path)
        console.print(f"wrote {path}")
    result = {
        "kind": "calibrate",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": env,
        "config": {
            "model": args.model,
            "url": target.url,
            "served_model": target.model,
            "design": [f"{p.prompt_len}:{p.output_len}" for p in design],
            "reference_concurrency": args.reference_concurrency,
            "requests_per_point": num_requests,
            "usd_per_hour": args.usd_per_hour,
            "seed": args.seed,
        },
        "points": measured,
        "fit": {
            **calibration.model_dump(mode="json"),
            "prompt_usd_per_mtok": _usd_per_mtok(
                fit.prompt_s_per_token, args.usd_per_hour
            ),
            "completion_usd_per_mtok": _usd_per_mtok(
                fit.completion_s_per_token, args.usd_per_hour
            ),
        },
        "calibration_path": None if args.dry_run else str(path),
    }
    finish(args, result, console)
    return 0


def _usd_per_mtok(s_per_token: float, usd_per_hour: float | None) -> float | None:
    if usd_per_hour is None:
        return None
    return s_per_token * usd_per_hour / _S_PER_HOUR * _TOKENS_PER_MTOK


def _design_table(measured: Sequence[dict[str, Any]], fit: Fit) -> Table:
    table = Table(title="calibration design")
    headers = ("prompt:output", "done", "prompt tok", "compl tok", "engine ms/req")
    for header in (*headers, "fit ms/req", "rel error %"):
        table.add_column(header, justify="right")
    for m in measured:
        measured_s = m["engine_s_per_request"]
        cells = [f"{m['prompt_len']}:{m['output_len']}", f"{m['completed']}"]
        if measured_s is None:
            table.add_row(*cells, "-", "-", "-", "-", "-")
            continue
        fitted_s = fit.predict_s(m["mean_prompt_tokens"], m["mean_completion_tokens"])
        table.add_row(
            *cells,
            f"{m['mean_prompt_tokens']:.0f}",
            f"{m['mean_completion_tokens']:.0f}",
            f"{measured_s * 1000:.1f}",
            f"{fitted_s * 1000:.1f}",
            f"{100 * (fitted_s - measured_s) / measured_s:+.1f}",
        )
    return table


def _print_fit(fit: Fit, usd_per_hour: float | None, console: Console) -> None:
    console.print(
        f"prompt: {fit.prompt_s_per_token * 1000:.4f} engine-ms/token, "
        f"completion: {fit.completion_s_per_token * 1000:.4f} engine-ms/token; "
        f"fit residual {100 * fit.residual_rel_rms:.1f}% RMS over "
        f"{fit.num_points} points",
        highlight=False,
    )
    if usd_per_hour is not None:
        prompt = _usd_per_mtok(fit.prompt_s_per_token, usd_per_hour)
        completion = _usd_per_mtok(fit.completion_s_per_token, usd_per_hour)
        console.print(
            f"at ${usd_per_hour:g}/hour: ${prompt:.4f}/M prompt tokens, "
            f"${completion:.4f}/M completion tokens",
            highlight=False,
        )
    if fit.residual_rel_rms > _POOR_FIT_REL_RMS:
        console.print(
            "[yellow]warning:[/] the fit's residual is large: cost is not linear in "
            "tokens at this load; treat prices as rough, or calibrate with more "
            "requests per point (--requests-per-point)"
        )
