"""How fast tokenmill's load generator can go, next to the barest aiohttp client.

Method: an instant mock OpenAI server (`bench.mock_server`, its own process)
answers small `/v1/completions` requests (`--input-len` words in, `--output-len`
tokens out). Every round runs, per mode (whole responses, then streams):

- bare: `--concurrency` tasks on one aiohttp session post one pre-encoded body as
  fast as they can and read each response's bytes; nothing else. The session has
  the load generator's own options, so that the difference between the two is
  what the generator does per request (timing, parsing, results).
- loadgen: `bench run`'s own path (`bench.sweep.run_sweep`, so `run_point`'s
  closed loop) at the same concurrency for the same number of requests, each
  request its own synthetic body, as `bench run` sends them.

Both warm up with one request per client first. The two take turns, the first of
each round alternating, so that drift in a shared machine's load falls on both;
the ratio loadgen / bare is the median of the per-round ratios. Client CPU per
request is `bench run`'s own `client_cpu_per_request_ms` (warm-up and request
encoding included) and, for bare, the same accounting; the mock's cores show
when the mock, not the client, set the pace.

Target (issue #5): loadgen at least 0.8 x the bare loop's requests/s.

Run: `python -m bench.loadgen_ceiling [--rounds 5 --concurrency 64
--num-requests 20000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.runner import Point, Target
from bench.services import (
    ServiceError,
    benchmark_lock,
    run_benchmark,
    start_benchmark,
    start_mock,
)
from bench.sweep import RunConfig, run_sweep
from bench.workloads import SyntheticWorkload

console = Console()

MODEL = "mock"
MODES = ("whole", "stream")
TOOLS = ("bare", "loadgen")
LABELS = {"bare": "bare aiohttp", "loadgen": "tokenmill"}
TARGET_RATIO = 0.8


@dataclass(frozen=True)
class CeilingConfig:
    """What each run sends, and how many rounds of runs."""

    concurrency: int = 64
    num_requests: int = 20_000
    rounds: int = 5
    input_len: int = 16
    output_len: int = 16
    modes: Sequence[str] = MODES

    def __post_init__(self) -> None:
        for name in ("concurrency", "num_requests", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} is {getattr(self, name)}; "
                    "use 1 or more"
                )
        if unknown := set(self.modes) - set(MODES):
            raise ValueError(f"unknown modes {sorted(unknown)}; use {MODES}")


def _target(base_url: str, api_key: str | None, mode: str) -> Target:
    return Target(base_url, MODEL, api_key, is_chat=False, is_stream=mode == "stream")


async def run_bare(
    target: Target, body: bytes, concurrency: int, num_requests: int
) -> dict[str, Any]:
    """The bare loop: one body, `num_requests` times, read and dropped."""
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"

    async def run(session: aiohttp.ClientSession, num_requests: int) -> int:
        num_left, num_errors = num_requests, 0

        async def client() -> None:
            nonlocal num_left, num_errors
            while num_left > 0:
                num_left -= 1
                async with session.post(
                    target.url, data=body, headers=headers
                ) as response:
                    await response.read()
                    num_errors += response.status != 200

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return num_errors

    cpu_started_s = time.process_time()
    # LoadGenerator's session options, so that only the per-request work differs.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
        auto_decompress=False,
        read_bufsize=2**18,
        skip_auto_headers=("User-Agent",),
    ) as session:
        await run(session, concurrency)
        started = time.perf_counter()
        num_errors = await run(session, num_requests)
        duration_s = time.perf_counter() - started
    client_cpu_s = time.process_time() - cpu_started_s
    return {
        "duration_s": duration_s,
        "num_requests": num_requests,
        "num_errors": num_errors,
        "requests_per_s": (num_requests - num_errors) / duration_s,
        "client_cpu_per_request_ms": client_cpu_s / num_requests * 1000,
    }


async def run_loadgen(
    target: Target, workload: SyntheticWorkload, concurrency: int, num_requests: int
) -> dict[str, Any]:
    """One `bench run` point, closed loop at `concurrency`, telemetry off."""
    config = RunConfig(
        target=target,
        workload=workload,
        points=[Point("concurrency", concurrency)],
        num_requests=num_requests,
        telemetry="off",
    )
    (point,) = await run_sweep(config)
    return {
        "duration_s": point["duration"],
        "num_requests": num_requests,
        "num_errors": point["failed"],
        "requests_per_s": point["request_throughput"],
        "client_cpu_per_request_ms": point["client_cpu_per_request_ms"],
    }


async def measure_ceiling(
    base_url: str,
    api_key: str | None,
    config: CeilingConfig,
    mock_cpu_s: Callable[[], float] | None = None,
    on_run: Callable[[int, str, str, dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Alternate bare and loadgen runs for `config.rounds` rounds; the result.

    `mock_cpu_s` reads the mock's CPU seconds (for its cores per run); `on_run`
    sees each run as it ends: (round index, mode, tool, run).
    """
    workload = SyntheticWorkload(config.input_len, config.output_len)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {tool: [] for tool in TOOLS} for mode in config.modes
    }
    for round_index in range(config.rounds):
        for mode in config.modes:
            target = _target(base_url, api_key, mode)
            body = workload.request(0).encode(
                MODEL, target.is_chat, target.is_stream, target.ignore_eos
            )
            order = TOOLS if round_index % 2 == 0 else TOOLS[::-1]
            for tool in order:
                mock_started_s = mock_cpu_s() if mock_cpu_s is not None else 0.0
                if tool == "bare":
                    run = await run_bare(
                        target, body, config.concurrency, config.num_requests
                    )
                else:
                    run = await run_loadgen(
                        target, workload, config.concurrency, config.num_requests
                    )
                # Warm-up included: a few dozen requests among thousands.
                run["mock_cores"] = (
                    (mock_cpu_s() - mock_started_s) / run["duration_s"]
                    if mock_cpu_s is not None
                    else None
                )
                runs[mode][tool].append(run)
                if on_run is not None:
                    on_run(round_index, mode, tool, run)
    return ceiling_result(runs, config)


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ceiling_result(
    runs: dict[str, dict[str, list[dict[str, Any]]]], config: CeilingConfig
) -> dict[str, Any]:
    """The JSON line: per mode and tool the runs and their medians; the ratios."""
    modes: dict[str, Any] = {}
    for mode, by_tool in runs.items():
        summary: dict[str, Any] = {}
        for tool, tool_runs in by_tool.items():
            summary[tool] = {
                "requests_per_s": _median([r["requests_per_s"] for r in tool_runs]),
                "requests_per_s_by_round": [r["requests_per_s"] for r in tool_runs],
                "client_cpu_per_request_ms": _median(
                    [r["client_cpu_per_request_ms"] for r in tool_runs]
                ),
                "mock_cores": _median([r["mock_cores"] for r in tool_runs]),
                "num_errors": sum(r["num_errors"] for r in tool_runs),
            }
        ratios = [
            loadgen / bare if bare else None
            for loadgen, bare in zip(
                summary["loadgen"]["requests_per_s_by_round"],
                summary["bare"]["requests_per_s_by_round"],
                strict=True,
            )
        ]
        ratio = _median(ratios)
        summary["ratio_by_round"] = ratios
        summary["ratio"] = ratio
        summary["ratio_at_least_0_8"] = None if ratio is None else ratio >= TARGET_RATIO
        bare_cpu = summary["bare"]["client_cpu_per_request_ms"]
        loadgen_cpu = summary["loadgen"]["client_cpu_per_request_ms"]
        summary["loadgen_added_cpu_per_request_ms"] = (
            loadgen_cpu - bare_cpu
            if loadgen_cpu is not None and bare_cpu is not None
            else None
        )
        modes[mode] = summary
    return {
        "benchmark": "loadgen_ceiling",
        "concurrency": config.concurrency,
        "num_requests": config.num_requests,
        "rounds": config.rounds,
        "input_len": config.input_len,
        "output_len": config.output_len,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "modes": modes,
    }


def _fmt(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "null" if value is None else f"{value * scale:,.{digits}f}"


def _table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"load generator ceiling, req/s: {result['concurrency']} clients, "
        f"{result['num_requests']:,} requests a run, against an instant mock",
        caption="r1, r2, ...: req/s in each round; ratio: median over rounds of "
        "loadgen / bare req/s (target >= "
        f"{TARGET_RATIO}); µs CPU/req: the client's CPU time per request; "
        "mock cores: the mock's CPU use (1.0: the mock set the pace)",
    )
    table.add_column("mode")
    table.add_column("client")
    for index in range(result["rounds"]):
        table.add_column(f"r{index + 1}", justify="right")
    for column in ("median", "ratio", "µs CPU/req", "mock cores", "errors"):
        table.add_column(column, justify="right")
    for mode, summary in result["modes"].items():
        for tool in TOOLS:
            row = summary[tool]
            ratio = _fmt(summary["ratio"], digits=3) if tool == "loadgen" else ""
            table.add_row(
                mode,
                LABELS[tool],
                *(_fmt(rate) for rate in row["requests_per_s_by_round"]),
                _fmt(row["requests_per_s"]),
                ratio,
                _fmt(row["client_cpu_per_request_ms"], 1000),
                _fmt(row["mock_cores"], digits=2),
                str(row["num_errors"]),
            )
    return table


def _print_report(result: dict[str, Any]) -> None:
    console.print(_table(result))
    for mode, summary in result["modes"].items():
        ratios = " ".join(_fmt(r, digits=3) for r in summary["ratio_by_round"])
        added_ms = summary["loadgen_added_cpu_per_request_ms"]
        console.print(
            f"{mode}: loadgen / bare by round {ratios}; median "
            f"{_fmt(summary['ratio'], digits=3)} (target >= {TARGET_RATIO}); the "
            f"loadgen adds {_fmt(added_ms, 1000, 1)} µs CPU per request"
        )


def _print_run(round_index: int, mode: str, tool: str, run: dict[str, Any]) -> None:
    console.print(
        f"round {round_index + 1}  {mode:<6} {LABELS[tool]:<12} "
        f"{run['requests_per_s']:9,.0f} req/s  "
        f"{run['client_cpu_per_request_ms'] * 1000:6.1f} µs CPU/req  "
        f"errors {run['num_errors']}",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--num-requests", type=int, default=20_000)
    parser.add_argument("--input-len", type=int, default=16)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--modes", default=",".join(MODES), help="whole,stream")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    try:
        config = CeilingConfig(
            concurrency=args.concurrency,
            num_requests=args.num_requests,
            rounds=args.rounds,
            input_len=args.input_len,
            output_len=args.output_len,
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
        )
    except ValueError as exc:
        parser.error(str(exc))
    start_benchmark(console, args.log_level)
    api_key = secrets.token_urlsafe(16)
    with (
        tempfile.TemporaryDirectory(prefix="tokenmill-loadgen-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        try:
            stack.enter_context(benchmark_lock("loadgen_ceiling", console))
            mock, mock_url = start_mock(stack, Path(tmp), api_key, config.output_len)
        except ServiceError as exc:
            console.print(f"loadgen_ceiling: {exc}", markup=False)
            sys.exit(1)
        result = asyncio.run(
            measure_ceiling(mock_url, api_key, config, mock.cpu_s, _print_run)
        )
    _print_report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    run_benchmark("loadgen_ceiling", main, console)
