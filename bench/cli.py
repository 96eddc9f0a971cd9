"""The `bench` command: `bench run`, `bench compare`, `bench calibrate MODEL`,
`bench nightly SUITE.yaml`, `bench history`.

Also `python -m bench …` and `tokenmill bench …`. Tables and progress go to the
terminal; `--json` prints the whole result as one JSON line last, and
`--result-json PATH` writes it to a file. Every run is stored in the history.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from bench.environment import (
    default_home,
    engine_version,
    git_revision,
    host_description,
    tokenmill_version,
)
from bench.history import HISTORY_FILENAME, History
from bench.metrics import Slo
from bench.runner import Point, Target, origin_of
from bench.workloads import (
    WORKLOAD_KINDS,
    MtBenchWorkload,
    SharedPrefixWorkload,
    SyntheticWorkload,
    Workload,
)

logger = logging.getLogger("bench")


class UsageError(Exception):
    """A bad option value; the message says which and how to fix it."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    # Piped output (CI logs, files) gets room for the wide tables.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "calibrate":
            from bench.calibrate import calibrate_command

            return calibrate_command(args, console)
        if args.command == "compare":
            from bench.compare import compare_command

            return compare_command(args, console)
        if args.command == "nightly":
            from bench.nightly import nightly_command

            return nightly_command(args, console)
        return _history(args, console)
    except (UsageError, ValueError) as exc:
        parser.exit(2, f"bench {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Throughput, latency and cost of an LLM endpoint."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="measure an OpenAI-compatible endpoint")
    add_target_args(run)
    add_workload_args(run)
    sweep = run.add_argument_group("profile (closed or open loop)")
    sweep.add_argument(
        "--concurrency",
        type=_numbers,
        help="closed loop: clients in flight, one point each, e.g. 1,4,16",
    )
    sweep.add_argument(
        "--request-rate",
        type=_numbers,
        help="open loop: Poisson arrivals per second, one point each, e.g. 1,2,inf",
    )
    sweep.add_argument(
        "--max-concurrency", type=int, help="open loop: cap on requests in flight"
    )
    amount = sweep.add_mutually_exclusive_group()
    amount.add_argument("--num-requests", type=int, help="measured requests a point")
    amount.add_argument("--duration-s", type=float, help="measured seconds a point")
    sweep.add_argument(
        "--num-warmup",
        type=int,
        help="unmeasured requests before each point (default: one per client)",
    )
    run.add_argument(
        "--slo", default="", help="goodput objectives, e.g. ttft_ms=500,tpot_ms=50"
    )
    add_cost_args(run)
    run.add_argument(
        "--telemetry", choices=("auto", "nvml", "cpu", "off"), default="auto"
    )
    add_output_args(run)

    from bench.compare import add_parser as add_compare_parser

    add_compare_parser(commands)

    from bench.nightly import add_parser as add_nightly_parser

    add_nightly_parser(commands)

    calibrate = commands.add_parser(
        "calibrate", help="fit engine-seconds per token; write the calibration file"
    )
    calibrate.add_argument("model", help="the model's name in models.yaml")
    add_target_args(calibrate, with_model=False)
    calibrate.add_argument(
        "--served-model",
        help="the name the server knows the model by (default: MODEL)",
    )
    add_cost_args(calibrate)
    calibrate.add_argument(
        "--reference-concurrency",
        type=int,
        default=4,
        help="the load the calibration describes (default 4)",
    )
    calibrate.add_argument(
        "--requests-per-point",
        type=int,
        default=None,
        help="measured requests per design point (default: 2 x concurrency)",
    )
    calibrate.add_argument(
        "--design",
        default="64:16,64:128,512:16,512:128,256:64",
        help="design points PROMPT:OUTPUT tokens, comma-separated",
    )
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument(
        "--dry-run", action="store_true", help="fit and report, write no file"
    )
    add_output_args(calibrate)

    history = commands.add_parser("history", help="list stored runs")
    history.add_argument("--kind", choices=("run", "calibrate", "compare"))
    history.add_argument("--model")
    history.add_argument("--limit", type=int, default=20)
    add_output_args(history, with_result=False)
    return parser


def add_target_args(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
    target = parser.add_argument_group("target")
    target.add_argument(
        "--url",
        required=True,
        help="the server: http://host:port, …/v1 or a full …/completions URL",
    )
    if with_model:
        target.add_argument("--model", help="model name (default: the server's first)")
    target.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (keeps it out of `ps`)",
    )
    target.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    target.add_argument(
        "--no-stream",
        action="store_true",
        help="whole responses: no TTFT, TPOT or ITL",
    )


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    workload = parser.add_argument_group("workload")
    workload.add_argument("--workload", choices=WORKLOAD_KINDS, default="synthetic")
    workload.add_argument("--input-len", type=int, default=256, help="synthetic")
    workload.add_argument("--output-len", type=int, default=128, help="max_tokens")
    workload.add_argument(
        "--range-ratio", type=float, default=0.0, help="synthetic: length spread"
    )
    workload.add_argument(
        "--ignore-eos",
        action="store_true",
        help="decode all max_tokens (vLLM's extension), so output lengths are exact",
    )
    workload.add_argument("--prefix-len", type=int, default=512, help="shared-prefix")
    workload.add_argument("--suffix-len", type=int, default=32, help="shared-prefix")
    workload.add_argument("--num-prefixes", type=int, default=1, help="shared-prefix")
    workload.add_argument("--seed", type=int, default=0)


def add_cost_args(parser: argparse.ArgumentParser) -> None:
    cost = parser.add_argument_group("hardware and cost")
    cost.add_argument("--usd-per-hour", type=float, help="what the hardware costs")
    cost.add_argument(
        "--hardware", help="a name for the hardware, e.g. h100-80gb or cpu-2core"
    )


def add_output_args(parser: argparse.ArgumentParser, with_result: bool = True) -> None:
    output = parser.add_argument_group("output")
    if with_result:
        output.add_argument("--result-json", type=Path, help="write the result here")
        output.add_argument(
            "--no-history", action="store_true", help="do not store the run"
        )
    output.add_argument(
        "--json", action="store_true", help="print the result as one JSON line last"
    )
    output.add_argument(
        "--home", type=Path, help="tokenmill's home (default $TOKENMILL_HOME)"
    )
    output.add_argument(
        "--history-db", type=Path, help=f"default HOME/{HISTORY_FILENAME}"
    )
    output.add_argument("--log-level", default="warning")


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers, e.g. 1,4,16"
        ) from None


def api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_env is None:
        return None
    if not (key := os.environ.get(args.api_key_env)):
        raise UsageError(
            f"--api-key-env {args.api_key_env}: that variable is unset or empty; "
            f"export {args.api_key_env}=YOUR_KEY"
        )
    return key


def served_model(base_url: str, key: str | None) -> str:
    """The first model the server lists at `/v1/models`."""
    models_url = base_url.rstrip("/")
    models_url = models_url.split("/v1", 1)[0] + "/v1/models"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        request = urllib.request.Request(models_url, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            models = orjson.loads(response.read()).get("data") or []
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UsageError(
            f"cannot list models at {models_url} ({exc}); check --url, or name the "
            "model with --model"
        ) from None
    if not models:
        raise UsageError(f"{models_url} lists no models; name one with --model")
    return str(models[0]["id"])


def _workload(args: argparse.Namespace) -> Workload:
    if args.workload == "shared-prefix":
        return SharedPrefixWorkload(
            args.prefix_len,
            args.suffix_len,
            args.output_len,
            args.num_prefixes,
            args.seed,
        )
    if args.workload == "mt-bench":
        return MtBenchWorkload(args.output_len, args.seed)
    return SyntheticWorkload(
        args.input_len, args.output_len, args.range_ratio, args.seed
    )


def _points(args: argparse.Namespace) -> list[Point]:
    points = [Point("concurrency", c) for c in args.concurrency or []]
    for rate in args.request_rate or []:
        points.append(Point("rate", rate, args.max_concurrency))
    if not points:
        points = [Point("concurrency", 1)]
    return points


def environment(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    return {
        "git_revision": git_revision(),
        "tokenmill_version": tokenmill_version(),
        "engine_version": engine_version(origin_of(args.url), target.api_key),
        "hardware": args.hardware,
        "usd_per_hour": args.usd_per_hour,
        "host": host_description(),
    }


def target_from(
    args: argparse.Namespace, model: str | None, ignore_eos: bool
) -> Target:
    key = api_key(args)
    return Target(
        base_url=args.url,
        model=model or served_model(args.url, key),
        api_key=key,
        is_chat=args.endpoint == "chat",
        is_stream=not args.no_stream,
        ignore_eos=ignore_eos,
    )


def finish(args: argparse.Namespace, result: dict[str, Any], console: Console) -> None:
    """Store, write and print the result as the options ask."""
    encoded = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if getattr(args, "result_json", None):
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        args.result_json.write_bytes(encoded + b"\n")
    if not getattr(args, "no_history", False):
        history = History(history_path(args))
        run_id = history.record(result)
        console.print(f"stored as run {run_id} in {history.path}", style="dim")
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")


def history_path(args: argparse.Namespace) -> Path:
    if args.history_db is not None:
        return Path(args.history_db)
    return (args.home or default_home()) / HISTORY_FILENAME


def _run(args: argparse.Namespace, console: Console) -> int:
    from bench.sweep import (
        RunConfig,
        print_errors,
        results_table,
        run_result,
        run_sweep,
        telemetry_table,
    )

    target = target_from(args, args.model, args.ignore_eos)
    points = _points(args)
    if args.num_requests is None and args.duration_s is None:
        args.num_requests = 100
    config = RunConfig(
        target=target,
        workload=_workload(args),
        points=points,
        num_requests=args.num_requests,
        duration_s=args.duration_s,
        num_warmup=args.num_warmup,
        slo=Slo.parse(args.slo),
        usd_per_hour=args.usd_per_hour,
        telemetry=args.telemetry,
        seed=args.seed,
    )
    point_results = asyncio.run(run_sweep(config, console))
    result = run_result(config, point_results, environment(args, target))

    console.print(results_table(point_results, f"bench run: {target.model}"))
    if (table := telemetry_table(point_results)) is not None:
        console.print(table)
    print_errors(point_results, console)
    finish(args, result, console)
    return 0 if all(p["completed"] for p in point_results) else 1


def _history(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    runs = History(history_path(args)).runs(args.kind, args.model, args.limit)
    if args.json:
        rows = [{**run.__dict__} for run in runs]
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
        return 0
    table = Table(title=f"bench history ({len(runs)} runs)")
    for header in ("id", "created", "kind", "model", "hardware", "git", "headline"):
        table.add_column(header)
    for run in runs:
        table.add_row(
            str(run.id),
            run.created_at,
            run.kind,
            run.model or "-",
            run.hardware or "-",
            (run.git_revision or "-")[:12],
            _headline(run.result),
        )
    console.print(table)
    return 0


def _headline(result: dict[str, Any]) -> str:
    if result.get("kind") == "compare":
        from bench.compare_table import headline

        return headline(result)
    if result.get("kind") == "calibrate":
        fit = result.get("fit") or {}
        return (
            f"prompt {fit.get('prompt_s_per_token', 0):.3g} s/tok, completion "
            f"{fit.get('completion_s_per_token', 0):.3g} s/tok"
        )
    return "; ".join(
        f"{p['label']}: {p['output_throughput']:.1f} out tok/s"
        for p in result.get("points", [])
    )
