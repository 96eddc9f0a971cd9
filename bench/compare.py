"""`bench compare`: one workload against several models behind one URL, e.g. a
model at bf16, int8 and int4, to see the memory, quality and cost trade-off.

Method. The models take turns: each round measures every model once, one point
(closed loop at `--concurrency`, after a warm-up) after another, and the order
rotates each round (round r starts with model r mod n), so neither a cold first
point nor a host's slow drift (thermal, other tenants) always lands on the same
model. Each model's figures are the medians of its per-round figures; the rounds
stay in the result so the spread (min-max in the table) shows the noise. Every
model gets the same requests (one workload, one seed).

Cost per million tokens is the model's $/hour (`--usd-per-hour`, else its
models.yaml `hardware.usd_per_hour`) over its throughput, as `bench run` prices
a point. Size and quality come from the checkpoint and its quantize report (see
`bench.compare_variants`). Ratios divide by the baseline (default: the first
model). In the history the run's model is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bench.cli import (
    _workload,
    add_cost_args,
    add_output_args,
    add_target_args,
    add_workload_args,
    environment,
    finish,
    target_from,
)
from bench.environment import default_home
from bench.runner import Point, Target
from bench.workloads import Workload

if TYPE_CHECKING:
    from bench.compare_variants import ModelFacts

# Per model per round: with the default 3 rounds, 192 requests a model, about
# what a `bench run` point measures, yet a three-model compare stays short.
_DEFAULT_NUM_REQUESTS = 64


def add_parser(commands: Any) -> None:
    """Register `compare` on the `bench` command's subparsers."""
    compare = commands.add_parser(
        "compare",
        help="one workload against several models or precisions, alternating",
    )
    add_target_args(compare, with_model=False)
    models = compare.add_argument_group("models")
    models.add_argument(
        "--models",
        required=True,
        type=_names,
        help="the served names to compare, comma-separated, e.g. "
        "smollm2-135m,smollm2-135m-int8,smollm2-135m-int4",
    )
    models.add_argument(
        "--baseline", help="the model ratios divide by (default: the first)"
    )
    models.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a model's checkpoint directory, for its size and quantize report "
        "(default: from models.yaml); repeatable",
    )
    models.add_argument(
        "--config",
        type=Path,
        help="models.yaml for checkpoints, precisions and $/hour "
        "(default: $TOKENMILL_CONFIG, else ./models.yaml if present)",
    )
    add_workload_args(compare)
    profile = compare.add_argument_group("profile")
    profile.add_argument(
        "--concurrency", type=int, default=4, help="clients in flight (default 4)"
    )
    amount = profile.add_mutually_exclusive_group()
    amount.add_argument(
        "--num-requests",
        type=int,
        help=f"measured requests per model per round (default {_DEFAULT_NUM_REQUESTS})",
    )
    amount.add_argument(
        "--duration-s", type=float, help="measured seconds per model per round"
    )
    profile.add_argument(
        "--num-warmup",
        type=int,
        help="unmeasured requests before each point (default: one per client)",
    )
    profile.add_argument(
        "--rounds", type=int, default=3, help="turns each model gets (default 3)"
    )
    add_cost_args(compare)
    add_output_args(compare)


def compare_command(args: argparse.Namespace, console: Console) -> int:
    """`bench compare`: measure every model in turn, then the table and result."""
    # Imported here: `bench --help` and the other commands need none of it.
    from bench.compare_summary import summarize, with_ratios
    from bench.compare_table import compare_table
    from bench.compare_variants import (
        load_models_yaml,
        model_facts,
        parse_checkpoints,
        with_baseline_quality,
    )
    from bench.sweep import print_errors

    models: list[str] = args.models
    baseline = args.baseline or models[0]
    _check_options(args, models, baseline)
    checkpoints = parse_checkpoints(args.checkpoint, models)
    models_file, config_dir = load_models_yaml(args.config)
    home = args.home or default_home()
    facts = with_baseline_quality(
        [
            model_facts(
                name,
                models_file,
                config_dir,
                home,
                checkpoints.get(name),
                args.usd_per_hour,
            )
            for name in models
        ],
        baseline,
    )
    if args.num_requests is None and args.duration_s is None:
        args.num_requests = _DEFAULT_NUM_REQUESTS
    targets = {name: target_from(args, name, args.ignore_eos) for name in models}
    workload = _workload(args)

    rounds = asyncio.run(_measure(args, targets, workload, facts, console))
    variants = [summarize(f, rounds[f.name]) for f in facts]
    result: dict[str, Any] = {
        "kind": "compare",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(args, targets[baseline]),
        "config": _describe(args, targets[baseline], workload, models, baseline),
        "baseline": baseline,
        "variants": with_ratios(variants, baseline),
    }

    console.print(compare_table(result))
    for variant in variants:
        print_errors(
            [
                {**p, "label": f"{variant['model']} round {p['round'] + 1}"}
                for p in variant["rounds"]
            ],
            console,
        )
    finish(args, result, console)
    is_complete = all(p["completed"] for v in variants for p in v["rounds"])
    return 0 if is_complete else 1


def _check_options(args: argparse.Namespace, models: list[str], baseline: str) -> None:
    if len(set(models)) != len(models):
        raise ValueError(f"--models {','.join(models)} names a model twice")
    if baseline not in models:
        raise ValueError(
            f"--baseline {baseline!r} is not in --models ({', '.join(models)}); "
            "name one of them"
        )
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no model; e.g. --models smollm2-135m,smollm2-135m-int8"
        )
    return names


def schedule(models: Sequence[str], num_rounds: int) -> list[list[str]]:
    """The order of each round: round r starts with model r mod n."""
    n = len(models)
    return [[models[(r + i) % n] for i in range(n)] for r in range(num_rounds)]


async def _measure(
    args: argparse.Namespace,
    targets: dict[str, Target],
    workload: Workload,
    facts: Sequence[ModelFacts],
    console: Console,
) -> dict[str, list[dict[str, Any]]]:
    from bench.sweep import RunConfig, run_sweep

    usd_per_hour = {f.name: f.usd_per_hour for f in facts}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    order = schedule(list(targets), args.rounds)
    for round_index, names in enumerate(order):
        for position, name in enumerate(names):
            console.print(f"round {round_index + 1}/{len(order)}: {name}", style="dim")
            # One point a sweep; the engine's telemetry cannot be told apart
            # between models that share the machine, so none is sampled.
            config = RunConfig(
                target=targets[name],
                workload=workload,
                points=[Point("concurrency", args.concurrency)],
                num_requests=args.num_requests,
                duration_s=args.duration_s,
                num_warmup=args.num_warmup,
                usd_per_hour=usd_per_hour[name],
                telemetry="off",
                seed=args.seed,
            )
            (point,) = await run_sweep(config, console)
            rounds[name].append({**point, "round": round_index, "position": position})
    return rounds


def _describe(
    args: argparse.Namespace,
    target: Target,
    workload: Workload,
    models: list[str],
    baseline: str,
) -> dict[str, Any]:
    return {
        "url": target.url,
        # The history's model column: `bench history --model BASE` finds the
        # comparisons made against BASE.
        "model": baseline,
        "models": models,
        "baseline": baseline,
        "endpoint": "chat" if target.is_chat else "completions",
        "stream": target.is_stream,
        "ignore_eos": target.ignore_eos,
        "workload": workload.describe(),
        "concurrency": args.concurrency,
        "num_requests": args.num_requests,
        "duration_s": args.duration_s,
        "num_warmup": args.num_warmup,
        "rounds": args.rounds,
        "order": schedule(models, args.rounds),
        "usd_per_hour": args.usd_per_hour,
        "seed": args.seed,
    }
