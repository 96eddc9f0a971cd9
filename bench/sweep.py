"""`bench run`: a sweep of points against one endpoint, with telemetry and cost.

Each point is measured with `bench.runner`, summarized with `bench.metrics`, and
given the telemetry sampled on this machine while it ran (GPUs through NVML, else
CPU and RAM; meaningful when the engine runs here) and the client's own CPU time,
so a reader can tell when the load generator, not the server, was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.loadgen import LoadGenerator
from bench.metrics import Slo, compute_metrics, cost_metrics
from bench.runner import Point, PointRun, Target, run_point
from bench.workloads import Workload
from server.sampler import Sampler, TelemetrySummary
from server.telemetry import TelemetrySource, open_source

_TOKENS_PER_MTOK = 1_000_000
_MAX_ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class RunConfig:
    """Everything a `bench run` needs, except where its result goes."""

    target: Target
    workload: Workload
    points: Sequence[Point]
    num_requests: int | None = None
    duration_s: float | None = None
    # None: one round, a request per client (concurrency, or max_concurrency or 1
    # for an open loop).
    num_warmup: int | None = None
    slo: Slo = field(default_factory=Slo)
    usd_per_hour: float | None = None
    telemetry: str = "auto"  # auto | nvml | cpu | off
    telemetry_interval_s: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.num_requests is None) == (self.duration_s is None):
            raise ValueError("give exactly one of --num-requests and --duration-s")
        if self.num_requests is not None and self.num_requests < 1:
            raise ValueError(f"--num-requests must be >= 1, got {self.num_requests}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"--duration-s must be > 0, got {self.duration_s}")
        if not self.points:
            raise ValueError("give at least one --concurrency or --request-rate")

    def describe(self) -> dict[str, Any]:
        target = self.target
        return {
            "url": target.url,
            "model": target.model,
            "endpoint": "chat" if target.is_chat else "completions",
            "stream": target.is_stream,
            "ignore_eos": target.ignore_eos,
            "workload": self.workload.describe(),
            "points": [point.label for point in self.points],
            "num_requests": self.num_requests,
            "duration_s": self.duration_s,
            "num_warmup": self.num_warmup,
            "slo": self.slo.as_dict(),
            "usd_per_hour": self.usd_per_hour,
            "seed": self.seed,
        }


async def run_sweep(config: RunConfig, console: Console | None = None) -> list[dict]:
    """Measure every point of `config` in order; one result dict per point."""
    points: list[dict[str, Any]] = []
    async with _sampling(config) as sampler, LoadGenerator() as generator:
        for point in config.points:
            with _progress(console, point, config.num_requests) as advance:
                cpu_started_s = time.process_time()
                run = await run_point(
                    generator,
                    config.target,
                    config.workload,
                    point,
                    num_requests=config.num_requests,
                    duration_s=config.duration_s,
                    num_warmup=_num_warmup(config, point),
                    seed=config.seed,
                    on_result=lambda _result: advance(),
                )
                client_cpu_s = time.process_time() - cpu_started_s
            telemetry = await _telemetry(sampler, run.started_at_unix_s)
            points.append(point_result(run, config, telemetry, client_cpu_s))
    return points


def _num_warmup(config: RunConfig, point: Point) -> int:
    if config.num_warmup is not None:
        return config.num_warmup
    if point.profile == "concurrency":
        return int(point.value)
    return point.max_concurrency or 1


def point_result(
    run: PointRun,
    config: RunConfig,
    telemetry: Sequence[TelemetrySummary],
    client_cpu_s: float | None = None,
) -> dict[str, Any]:
    """One point's metrics, cost, telemetry and client overhead, JSON-ready."""
    point = run.point
    metrics = compute_metrics(run.results, run.duration_s, config.slo)
    total_tokens = (metrics["total_input_tokens"] or 0) + metrics["total_output_tokens"]
    devices = []
    for summary in telemetry:
        device = summary.to_dict()
        energy_j = summary.energy_j
        device["energy_j_per_mtok"] = (
            energy_j / total_tokens * _TOKENS_PER_MTOK
            if energy_j is not None and total_tokens
            else None
        )
        devices.append(device)
    return {
        "label": point.label,
        "profile": point.profile,
        "max_concurrency": (
            int(point.value)
            if point.profile == "concurrency"
            else point.max_concurrency
        ),
        # JSON has no inf; vLLM writes the rate as the string "inf" too.
        "request_rate": (
            None
            if point.profile == "concurrency"
            else ("inf" if point.value == float("inf") else point.value)
        ),
        **metrics,
        **cost_metrics(metrics, config.usd_per_hour),
        "error_examples": sorted({r.error for r in run.results if r.error})[
            :_MAX_ERROR_EXAMPLES
        ],
        "telemetry": devices,
        "client_cpu_s": client_cpu_s,
        "client_cpu_per_request_ms": (
            client_cpu_s / len(run.results) * 1000
            if client_cpu_s is not None and run.results
            else None
        ),
    }


def run_result(
    config: RunConfig, points: list[dict[str, Any]], environment: dict[str, Any]
) -> dict[str, Any]:
    """The whole run as one JSON-ready dict."""
    return {
        "kind": "run",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment,
        "config": config.describe(),
        "points": points,
    }


@dataclass
class _Sampling:
    sampler: Sampler
    source: TelemetrySource


@contextlib.asynccontextmanager
async def _sampling(config: RunConfig) -> AsyncIterator[_Sampling | None]:
    if config.telemetry == "off":
        yield None
        return
    source = open_source(config.telemetry)
    try:
        async with Sampler(source, interval_s=config.telemetry_interval_s) as sampler:
            yield _Sampling(sampler, source)
    finally:
        source.close()


async def _telemetry(
    sampling: _Sampling | None, since_unix_s: float
) -> list[TelemetrySummary]:
    if sampling is None:
        return []
    if summaries := sampling.sampler.summary(since_unix_s):
        return summaries
    # A point shorter than the sampling interval: one reading now, which covers
    # the time since the sampler's last one.
    samples = await asyncio.to_thread(sampling.source.sample)
    return [TelemetrySummary.from_samples([sample]) for sample in samples]


@contextlib.contextmanager
def _progress(
    console: Console | None, point: Point, num_requests: int | None
) -> Iterator[Any]:
    if console is None:
        yield lambda: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    with Progress(
        *columns, TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(point.label, total=num_requests)
        yield lambda: bar.advance(task)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def results_table(points: Sequence[dict[str, Any]], title: str = "bench run") -> Table:
    """The human summary: one row per point."""
    table = Table(title=title)
    headers = (
        "point", "req/s", "out tok/s", "TTFT med ms", "TTFT p99 ms",
        "TPOT med ms", "ITL p99 ms", "E2E med ms", "goodput req/s", "errors",
        "cached %", "$/M out", "$/M in",
    )  # fmt: skip
    for header in headers:
        is_point = header == "point"
        table.add_column(
            header, justify="left" if is_point else "right", no_wrap=is_point
        )
    for p in points:
        ratio = p["cached_tokens_ratio"]
        table.add_row(
            _short_label(p),
            _fmt(p["request_throughput"], 2),
            _fmt(p["output_throughput"]),
            _fmt(p["median_ttft_ms"]),
            _fmt(p["p99_ttft_ms"]),
            _fmt(p["median_tpot_ms"], 2),
            _fmt(p["p99_itl_ms"], 2),
            _fmt(p["median_e2el_ms"]),
            _fmt(p["request_goodput"], 2),
            str(p["failed"]),
            _fmt(None if ratio is None else 100 * ratio),
            _fmt(p["output_usd_per_mtok"], 3),
            _fmt(p["input_usd_per_mtok"], 3),
        )
    return table


def telemetry_table(points: Sequence[dict[str, Any]]) -> Table | None:
    """Mean and peak device readings per point; None when nothing was sampled."""
    rows = [(p["label"], device) for p in points for device in p["telemetry"]]
    if not rows:
        return None
    table = Table(title="telemetry (this machine)")
    headers = (
        "point", "device", "util mean %", "util peak %", "mem peak GiB",
        "power mean W", "energy J/Mtok", "client CPU ms/req",
    )  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in headers[:2] else "right")
    client_ms = {p["label"]: p["client_cpu_per_request_ms"] for p in points}
    for label, d in rows:
        memory = d["peak_memory_used_bytes"]
        table.add_row(
            label,
            f"{d['device']}{d['index']}",
            _fmt(d["mean_utilization_pct"]),
            _fmt(d["peak_utilization_pct"]),
            _fmt(None if memory is None else memory / 2**30, 2),
            _fmt(d["mean_power_w"]),
            _fmt(d["energy_j_per_mtok"], 0),
            _fmt(client_ms[label], 3),
        )
    return table


def _short_label(point: dict[str, Any]) -> str:
    if point["profile"] == "concurrency":
        return f"c={point['max_concurrency']}"
    rate = point["request_rate"]
    cap = point["max_concurrency"]
    return f"{rate if rate == 'inf' else f'{rate:g}'}/s" + (f" c<={cap}" if cap else "")


def print_errors(points: Sequence[dict[str, Any]], console: Console) -> None:
    """One line per point that had failures: counts by kind and examples."""
    for p in points:
        if p["errors_by_kind"]:
            console.print(
                f"[bold red]{p['label']}[/]: {p['failed']} failed "
                f"({_errors_text(p['errors_by_kind'])})",
                highlight=False,
            )
            for example in p["error_examples"]:
                console.print(f"  {example}", markup=False, highlight=False)


def _errors_text(errors_by_kind: dict[str, int]) -> str:
    if not errors_by_kind:
        return "0"
    return ", ".join(f"{kind} {n}" for kind, n in sorted(errors_by_kind.items()))
