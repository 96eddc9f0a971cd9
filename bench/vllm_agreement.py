"""Does `bench run` agree with vLLM's own benchmark, and does the gateway cost
throughput?

Method: one vLLM engine (the default SmolLM2-135M, on a loopback port, with a
random API key) and a tokenmill gateway in front of it (metered, as shipped).
Each round runs three benchmarks of the same workload, in an order that rotates
from round to round:

- `vllm`: vLLM's benchmark (`vllm.benchmarks.serve`, in this process: its own
  argparse from `add_cli_args`, then `main`) against the engine. Random dataset,
  `--random-input-len` / `--random-output-len` tokens, `--ignore-eos`, request
  rate inf with `--max-concurrency C` (a closed loop of C), `--num-prompts N`,
  `/v1/completions`, streaming with usage; its saved JSON is read back.
- `bench`: `bench run`'s path (`bench.sweep.run_sweep`) against the engine:
  `SyntheticWorkload` at the same lengths, completions endpoint, streaming,
  `ignore_eos`, a closed loop of C, N requests.
- `gateway`: the same `bench run` through the gateway.

Both tools send what vLLM's client sends: `prompt`, `max_tokens`, `ignore_eos`,
`stream` with `stream_options.include_usage` (vLLM adds a no-op
`repetition_penalty: 1.0`; neither sets a temperature). Their prompts differ in
kind, token ids decoded to text (vLLM) against common English words (bench), so
the table prints the mean prompt tokens the engine reported for each. Every run
gets a seed of its own, so that no run finds another's prompts in the prefix
cache; neither tool warms up within a run (vLLM's warm-up repeats one prompt),
so one warm-up per path runs before the first round instead.

Both compute the metrics the same way: output tokens from `usage`, TTFT to the
first chunk, TPOT = (latency - TTFT) / (output tokens - 1), throughputs over the
time from the first request sent to the last response. Two small differences
remain: vLLM's latency ends at the last token chunk and bench's at `[DONE]`, and
vLLM's TTFT counts a first chunk with empty text.

Targets (issue #5): bench / vllm within 5% for output throughput and median
TTFT; gateway / bench within the run-to-run noise of `bench` itself.

Run: `python -m bench.vllm_agreement [--rounds 3 --input-len 256 --output-len 64
--concurrency 8 --num-prompts 48]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.gateway_overhead import DEFAULT_HOME
from bench.runner import Point, Target
from bench.services import (
    ServiceError,
    benchmark_lock,
    run_benchmark,
    start_benchmark,
    start_gateway,
    start_vllm_engine,
)
from bench.sweep import RunConfig, run_sweep
from bench.workloads import SyntheticWorkload
from server.default_model import DEFAULT_MODEL_NAME, prepare_default_model

console = Console()

PATHS = ("vllm", "bench", "gateway")
LABELS = {
    "vllm": "vllm bench -> engine",
    "bench": "bench run -> engine",
    "gateway": "bench run -> gateway",
}
# (name, numerator, denominator) of the ratios in the JSON line.
RATIOS = (("bench_to_vllm", "bench", "vllm"), ("gateway_to_bench", "gateway", "bench"))
METRICS = (
    "output_throughput",
    "total_token_throughput",
    "median_ttft_ms",
    "median_tpot_ms",
    "mean_prompt_tokens",
)
TARGET_RELATIVE_DIFFERENCE = 0.05
# The metrics the 5% target covers.
TARGET_METRICS = ("output_throughput", "median_ttft_ms")


@dataclass(frozen=True)
class AgreementConfig:
    """The workload every benchmark sends, and how many rounds of it."""

    input_len: int = 256
    output_len: int = 64
    concurrency: int = 8
    num_prompts: int = 48
    rounds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("input_len", "output_len", "concurrency", "num_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} is {getattr(self, name)}; "
                    "use 1 or more"
                )
        if self.rounds < 1:
            raise ValueError(f"--rounds is {self.rounds}; use 1 or more")


@dataclass(frozen=True)
class Endpoint:
    """Where a path sends its requests: a base URL (no `/v1`) and its key."""

    base_url: str
    api_key: str | None


def vllm_bench_argv(
    endpoint: Endpoint,
    model: str,
    tokenizer_dir: Path,
    config: AgreementConfig,
    seed: int,
    result_path: Path,
) -> list[str]:
    """The arguments of `vllm bench serve` for this workload and seed."""
    return [
        "--backend", "openai",
        "--base-url", endpoint.base_url,
        "--endpoint", "/v1/completions",
        "--model", model,
        "--tokenizer", str(tokenizer_dir),
        "--dataset-name", "random",
        "--random-input-len", str(config.input_len),
        "--random-output-len", str(config.output_len),
        "--ignore-eos",
        "--request-rate", "inf",
        "--max-concurrency", str(config.concurrency),
        "--num-prompts", str(config.num_prompts),
        "--seed", str(seed),
        "--disable-tqdm",
        "--save-result",
        "--result-dir", str(result_path.parent),
        "--result-filename", result_path.name,
    ]  # fmt: skip


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def run_vllm_bench(
    endpoint: Endpoint,
    model: str,
    tokenizer_dir: Path,
    config: AgreementConfig,
    seed: int,
    workdir: Path,
) -> dict[str, Any]:
    """One run of vLLM's benchmark in this process; its saved result JSON."""
    # Imported here: vLLM takes ~10 s to import, and only this function needs it.
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    result_path = workdir / f"vllm-bench-seed{seed}.json"
    argv = vllm_bench_argv(endpoint, model, tokenizer_dir, config, seed, result_path)
    args = parser.parse_args(argv)
    log_path = result_path.with_suffix(".log")
    # vLLM's client takes the key from OPENAI_API_KEY; its report goes to stdout.
    with (
        _environment("OPENAI_API_KEY", endpoint.api_key),
        log_path.open("w") as log,
        contextlib.redirect_stdout(log),
    ):
        serve.main(args)
    # main() freezes the GC heap for its run; unfreeze, so that the runs after
    # it pay for garbage collection as they would alone.
    gc.unfreeze()
    return json.loads(result_path.read_text())


async def run_bench(
    endpoint: Endpoint, model: str, config: AgreementConfig, seed: int
) -> dict[str, Any]:
    """One `bench run` point: the same workload, closed loop, no warm-up."""
    target = Target(
        endpoint.base_url,
        model,
        endpoint.api_key,
        is_chat=False,
        is_stream=True,
        ignore_eos=True,
    )
    run_config = RunConfig(
        target=target,
        workload=SyntheticWorkload(config.input_len, config.output_len, seed=seed),
        points=[Point("concurrency", config.concurrency)],
        num_requests=config.num_prompts,
        num_warmup=0,
        telemetry="off",
        seed=seed,
    )
    (point,) = await run_sweep(run_config)
    return point


def row_of(result: dict[str, Any]) -> dict[str, Any]:
    """The compared metrics of one run, from vLLM's JSON or a `bench run` point."""
    completed = result["completed"]
    total_input = result.get("total_input_tokens")
    row = {metric: _float(result.get(metric)) for metric in METRICS[:-1]}
    row["mean_prompt_tokens"] = (
        total_input / completed if total_input is not None and completed else None
    )
    row["completed"] = completed
    row["failed"] = result["failed"]
    row["duration_s"] = _float(result.get("duration"))
    return row


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_seed(config: AgreementConfig, round_index: int, path: str) -> int:
    """A seed of its own for every run, so that no two runs share prompts."""
    return config.seed + round_index * len(PATHS) + PATHS.index(path) + 1


def run_rounds(
    endpoints: dict[str, Endpoint],
    model: str,
    tokenizer_dir: Path,
    config: AgreementConfig,
    workdir: Path,
    on_run: Callable[[int, str, dict[str, Any]], object] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Warm up each path, then run every path once a round; rows by path.

    `endpoints` maps "engine" and "gateway" to where they listen; `on_run` sees
    each run's row as it ends: (round index, path, row).
    """
    by_path: dict[str, Endpoint] = {
        "vllm": endpoints["engine"],
        "bench": endpoints["engine"],
        "gateway": endpoints["gateway"],
    }
    warmup = AgreementConfig(
        config.input_len,
        min(config.output_len, 8),
        config.concurrency,
        config.concurrency,
    )
    for name in ("engine", "gateway"):
        # Seeds below the runs': the warm-up's prompts are its own too.
        asyncio.run(run_bench(endpoints[name], model, warmup, seed=-1))
    rows: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for round_index in range(config.rounds):
        for path in _rotated(PATHS, round_index):
            seed = run_seed(config, round_index, path)
            if path == "vllm":
                result = run_vllm_bench(
                    by_path[path], model, tokenizer_dir, config, seed, workdir
                )
            else:
                result = asyncio.run(run_bench(by_path[path], model, config, seed))
            row = row_of(result)
            rows[path].append(row)
            if on_run is not None:
                on_run(round_index, path, row)
    return rows


def _rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _spread(values: Sequence[float | None]) -> float | None:
    """(max - min) / median: how far apart the rounds of one path were."""
    known = [v for v in values if v is not None]
    median = _median(known)
    if len(known) < 2 or not median:
        return None
    return (max(known) - min(known)) / median


def agreement_result(
    rows: dict[str, list[dict[str, Any]]], config: AgreementConfig, model: str
) -> dict[str, Any]:
    """The JSON line: per path the runs and medians, the ratios, the targets."""
    paths: dict[str, Any] = {}
    for path, path_rows in rows.items():
        summary: dict[str, Any] = {
            metric: _median([row[metric] for row in path_rows]) for metric in METRICS
        }
        summary["by_round"] = path_rows
        summary["failed"] = sum(row["failed"] for row in path_rows)
        summary["spread"] = {
            metric: _spread([row[metric] for row in path_rows])
            for metric in METRICS[:-1]
        }
        paths[path] = summary
    ratios: dict[str, Any] = {}
    for name, numerator, denominator in RATIOS:
        ratios[name] = {}
        for metric in METRICS:
            by_round = [
                _ratio(a[metric], b[metric])
                for a, b in zip(rows[numerator], rows[denominator], strict=True)
            ]
            ratios[name][metric] = {"median": _median(by_round), "by_round": by_round}
    targets_met = {
        f"bench_to_vllm_{metric}_within_5_pct": _within(
            ratios["bench_to_vllm"][metric]["median"]
        )
        for metric in TARGET_METRICS
    }
    return {
        "benchmark": "vllm_agreement",
        "model": model,
        "input_len": config.input_len,
        "output_len": config.output_len,
        "concurrency": config.concurrency,
        "num_prompts": config.num_prompts,
        "rounds": config.rounds,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "paths": paths,
        "ratios": ratios,
        "targets_met": targets_met,
    }


def _within(ratio: float | None) -> bool | None:
    if ratio is None:
        return None
    return abs(ratio - 1) <= TARGET_RELATIVE_DIFFERENCE


_METRIC_LABELS = {
    "output_throughput": "output tok/s",
    "total_token_throughput": "total tok/s",
    "median_ttft_ms": "TTFT p50 ms",
    "median_tpot_ms": "TPOT p50 ms",
    "mean_prompt_tokens": "prompt tokens",
}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "null" if value is None else f"{value:,.{digits}f}"


def runs_table(result: dict[str, Any]) -> Table:
    """Every run's figures, by path and metric, with the median over rounds."""
    table = Table(
        title=f"bench run vs vLLM's benchmark: {result['model']}, "
        f"{result['input_len']} in / {result['output_len']} out tokens, "
        f"concurrency {result['concurrency']}, {result['num_prompts']} prompts a run",
        caption="spread: (max - min) / median over rounds",
    )
    table.add_column("path")
    table.add_column("metric")
    for index in range(result["rounds"]):
        table.add_column(f"r{index + 1}", justify="right")
    for column in ("median", "spread", "failed"):
        table.add_column(column, justify="right")
    for path, summary in result["paths"].items():
        for metric in METRICS:
            spread = summary["spread"].get(metric)
            is_first = metric == METRICS[0]
            table.add_row(
                LABELS[path] if is_first else "",
                _METRIC_LABELS[metric],
                *(_fmt(row[metric], 2) for row in summary["by_round"]),
                _fmt(summary[metric], 2),
                "" if spread is None else f"{spread:.1%}",
                str(summary["failed"]) if is_first else "",
            )
    return table


def ratios_table(result: dict[str, Any]) -> Table:
    """The medians of the per-round ratios, against the targets."""
    table = Table(
        title="ratios (median of per-round ratios)",
        caption="target: bench / vllm within 1 ± "
        f"{TARGET_RELATIVE_DIFFERENCE:.0%} for output tok/s and TTFT p50; "
        "gateway / bench within the spread of bench's own rounds",
    )
    table.add_column("ratio")
    for metric in METRICS:
        table.add_column(_METRIC_LABELS[metric], justify="right")
    for name, numerator, denominator in RATIOS:
        table.add_row(
            f"{numerator} / {denominator}",
            *(_fmt(result["ratios"][name][metric]["median"], 3) for metric in METRICS),
        )
    return table


def _print_report(result: dict[str, Any]) -> None:
    console.print(runs_table(result))
    console.print(ratios_table(result))
    verdicts = {True: "met", False: "NOT met", None: "unknown"}
    for name, is_met in result["targets_met"].items():
        console.print(f"issue_5 target {name}: {verdicts[is_met]}")


def _print_run(round_index: int, path: str, row: dict[str, Any]) -> None:
    console.print(
        f"round {round_index + 1}  {LABELS[path]:<20} "
        f"{_fmt(row['output_throughput'])} output tok/s  "
        f"TTFT p50 {_fmt(row['median_ttft_ms'])} ms  "
        f"TPOT p50 {_fmt(row['median_tpot_ms'], 2)} ms  "
        f"prompt {_fmt(row['mean_prompt_tokens'])} tok  failed {row['failed']}",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--num-prompts", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    try:
        config = AgreementConfig(
            args.input_len,
            args.output_len,
            args.concurrency,
            args.num_prompts,
            args.rounds,
            args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    start_benchmark(console, args.log_level)
    api_key = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="tokenmill-agreement-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        try:
            stack.enter_context(benchmark_lock("vllm_agreement", console))
            console.print("starting the vLLM engine (about a minute on a CPU)")
            checkpoint = prepare_default_model(args.home, console)
            _, engine_url = start_vllm_engine(
                stack, workdir, checkpoint, DEFAULT_MODEL_NAME, api_key
            )
            _, gateway_url = start_gateway(
                stack, workdir, DEFAULT_MODEL_NAME, engine_url + "/v1", api_key
            )
        except ServiceError as exc:
            console.print(f"vllm_agreement: {exc}", markup=False)
            sys.exit(1)
        endpoints = {
            "engine": Endpoint(engine_url, api_key),
            "gateway": Endpoint(gateway_url, None),
        }
        rows = run_rounds(
            endpoints, DEFAULT_MODEL_NAME, checkpoint, config, workdir, _print_run
        )
    result = agreement_result(rows, config, DEFAULT_MODEL_NAME)
    _print_report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    run_benchmark("vllm_agreement", main, console)
