"""What the gateway, and its metering, cost a client in front of a real vLLM engine.

Method: one vLLM engine (the default SmolLM2-135M, on a loopback TCP port, with a
random API key) and two tokenmill gateways whose models.yaml names that engine as
a remote endpoint, with prices, hardware cost and an API reference (so that every
pricing path runs): one as shipped (metered) and one with `--metering false`. All
three routes (direct, unmetered gateway, gateway) end at the same engine; each
keeps one client session (open connections) for the whole run. After warm-up
requests on every route, every round measures:

- latency: one client, streaming, a short prompt, `--ttft-requests` requests of
  `--ttft-max-tokens` tokens per route. The routes take turns request by request
  (the first of each turn rotating), so that all meet the same moments of a shared
  machine; the round's median TTFT per route. A difference (what the gateway adds
  to direct, what metering adds to the unmetered gateway) is the median over
  rounds of the per-round differences. TTFT needs one token, so requests stop
  after two: with 20 requests of 16 tokens a round, per-round differences on two
  shared cores spread from -2 to +6 ms, and many short requests narrow that more
  cheaply than long ones. A request whose two tokens hold no text (about 1 in 100
  here, on every route) has no TTFT: it counts under errors and not in the median.
- throughput: `--concurrency` streams, `--throughput-requests` requests of
  `--throughput-max-tokens` tokens with `ignore_eos` (every request decodes all of
  its tokens); output tokens/s from `usage`, over the time from the first request
  to the last response. The routes go one after another, in an order that rotates
  from round to round; a ratio is the median over rounds of the per-round ratios.

Targets: each gateway adds at most 2 ms to median TTFT and keeps at least 0.97 x
direct throughput; metering adds at most 1 ms to median TTFT and keeps at least
0.97 x the unmetered gateway's throughput.

The engine, the gateways and this client share the machine's cores, so on a busy
machine a TTFT difference of a few ms drowns in noise. Each gateway's CPU time per
request, which depends least on the load, is reported for both kinds of run, with
the cores each process used during the throughput runs.

Run: `python -m bench.gateway_overhead [--rounds 6] [--home DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.loadgen import LoadGenerator, Workload, percentile
from bench.services import (
    REPO,
    CpuClock,
    Service,
    ServiceError,
    run_benchmark,
    start_benchmark,
    start_gateway,
    start_vllm_engine,
)
from server.default_model import DEFAULT_MODEL_NAME, prepare_default_model

logger = logging.getLogger(__name__)
console = Console()

# The checkpoint the e2e tests prepare; reused, so no run pays for it twice.
DEFAULT_HOME = REPO / ".tokenmill" / "test-home"
TARGET_GATEWAY_TTFT_ADDED_S = 0.002
TARGET_METERING_TTFT_ADDED_S = 0.001
TARGET_THROUGHPUT_RATIO = 0.97
LABELS = {
    "direct": "direct",
    "gateway_unmetered": "unmetered",
    "gateway": "gateway",
}
# (route, baseline) of every comparison in the JSON line.
PAIRS = (
    ("gateway_unmetered", "direct"),
    ("gateway", "direct"),
    ("gateway", "gateway_unmetered"),
)
_PROMPT = "Name three colours."


# Compared by identity: routes key the dict of their clients.
@dataclasses.dataclass(eq=False)
class Route:
    """One way to the engine, and what each round measured on it."""

    name: str
    base_url: str
    api_key: str | None
    proxy: Service | None = None
    ttft_s_by_round: list[list[float]] = dataclasses.field(default_factory=list)
    # The proxy's CPU seconds per request over each round's latency requests.
    ttft_proxy_cpu_s_by_round: list[float | None] = dataclasses.field(
        default_factory=list
    )
    num_ttft_errors: int = 0
    throughput: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def workload(self, max_tokens: int, ignore_eos: bool = False) -> Workload:
        return Workload(
            url=self.base_url + "/v1/chat/completions",
            model=DEFAULT_MODEL_NAME,
            prompt=_PROMPT,
            max_tokens=max_tokens,
            is_stream=True,
            api_key=self.api_key,
            include_usage=True,
            extra_body={"ignore_eos": True} if ignore_eos else {},
        )

    def cpu_sources(self) -> dict[str, Callable[[], float]]:
        return {} if self.proxy is None else {"proxy": self.proxy.cpu_s}


def _rotated(routes: Sequence[Route], shift: int) -> list[Route]:
    shift %= len(routes)
    return [*routes[shift:], *routes[:shift]]


async def _run_rounds(
    routes: list[Route], engine: Service, args: argparse.Namespace
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            route: await stack.enter_async_context(LoadGenerator()) for route in routes
        }
        for route, client in clients.items():
            await client.run(route.workload(args.ttft_max_tokens), 1, num_requests=3)
            warmup = route.workload(8, ignore_eos=True)
            await client.run(warmup, args.concurrency, num_requests=args.concurrency)
        for round_index in range(args.rounds):
            label = f"round {round_index + 1}/{args.rounds}"
            await _measure_ttft(clients, args, label)
            for route in _rotated(routes, round_index):
                await _measure_throughput(route, clients[route], engine, args, label)


async def _measure_throughput(
    route: Route,
    client: LoadGenerator,
    engine: Service,
    args: argparse.Namespace,
    label: str,
) -> None:
    workload = route.workload(args.throughput_max_tokens, ignore_eos=True)
    cpu = CpuClock({"engine": engine.cpu_s, **route.cpu_sources()})
    cpu.start()
    result = await client.run(
        workload, args.concurrency, num_requests=args.throughput_requests
    )
    used_s = cpu.used_s()
    proxy_cpu_s = used_s.get("proxy")
    num_ok = result.num_requests - result.num_errors
    route.throughput.append(
        {
            **result.as_dict(),
            "engine_cores": used_s["engine"] / result.duration_s,
            "proxy_cores": _ratio(proxy_cpu_s, result.duration_s),
            "proxy_cpu_s_per_request": _ratio(proxy_cpu_s, num_ok),
        }
    )
    console.print(
        f"{label}  {LABELS[route.name]:<9} {result.output_tokens_per_s:6.1f} "
        f"output tokens/s  errors {result.num_errors}"
    )


async def _measure_ttft(
    clients: dict[Route, LoadGenerator], args: argparse.Namespace, label: str
) -> None:
    routes = list(clients)
    cpu = {route: CpuClock(route.cpu_sources()) for route in routes}
    for route in routes:
        route.ttft_s_by_round.append([])
        # The keep-alive connections may have closed while other routes ran.
        await clients[route].run(
            route.workload(args.ttft_max_tokens), 1, num_requests=1
        )
        cpu[route].start()
    # Requests rotate over the routes one by one, the first of each turn moving on,
    # so that all routes see the same moments of a shared machine.
    for index in range(args.ttft_requests):
        for route in _rotated(routes, index):
            workload = route.workload(args.ttft_max_tokens)
            result = await clients[route].run(workload, 1, num_requests=1)
            if result.ttft_median_s is None:
                route.num_ttft_errors += 1
            else:
                route.ttft_s_by_round[-1].append(result.ttft_median_s)
    for route in routes:
        proxy_cpu_s = cpu[route].used_s().get("proxy")
        route.ttft_proxy_cpu_s_by_round.append(_ratio(proxy_cpu_s, args.ttft_requests))
    medians_s = {route.name: _median(route.ttft_s_by_round[-1]) for route in routes}
    console.print(
        f"{label}  TTFT ms: "
        + ", ".join(f"{LABELS[name]} {_ms(t)}" for name, t in medians_s.items())
        + "; added: "
        + ", ".join(
            f"{LABELS[a]} - {LABELS[b]} {_ms(_difference(medians_s[a], medians_s[b]))}"
            for a, b in PAIRS
        )
    )


def _ms(value: float | None) -> str:
    return "null" if value is None else f"{value * 1000:.2f}"


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def summarize(route: Route) -> dict[str, Any]:
    """Medians over rounds of what `route` did, with the per-round values."""
    throughput = route.throughput
    ttft_medians_s = [_median(ttfts_s) for ttfts_s in route.ttft_s_by_round]
    all_ttfts_s = sorted(t for ttfts_s in route.ttft_s_by_round for t in ttfts_s)
    return {
        "ttft_median_s": _median(ttft_medians_s),
        "ttft_p90_s": percentile(all_ttfts_s, 90),
        "ttft_median_s_by_round": ttft_medians_s,
        "output_tokens_per_s": _median([r["output_tokens_per_s"] for r in throughput]),
        "output_tokens_per_s_by_round": [r["output_tokens_per_s"] for r in throughput],
        "itl_median_s": _median([r["itl_median_s"] for r in throughput]),
        "num_errors": route.num_ttft_errors + sum(r["num_errors"] for r in throughput),
        "proxy_cores": _median([r["proxy_cores"] for r in throughput]),
        "engine_cores": _median([r["engine_cores"] for r in throughput]),
        "ttft_proxy_cpu_s_per_request": _median(route.ttft_proxy_cpu_s_by_round),
        "throughput_proxy_cpu_s_per_request": _median(
            [r["proxy_cpu_s_per_request"] for r in throughput]
        ),
    }


def compare(route: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """What `route` adds to `baseline`'s TTFT and keeps of its throughput."""
    ttft_added_s = [
        _difference(a, b)
        for a, b in zip(
            route["ttft_median_s_by_round"],
            baseline["ttft_median_s_by_round"],
            strict=True,
        )
    ]
    throughput_ratios = [
        _ratio(a, b)
        for a, b in zip(
            route["output_tokens_per_s_by_round"],
            baseline["output_tokens_per_s_by_round"],
            strict=True,
        )
    ]
    return {
        "ttft_added_s": _median(ttft_added_s),
        "ttft_added_s_by_round": ttft_added_s,
        "throughput_ratio": _median(throughput_ratios),
        "throughput_ratio_by_round": throughput_ratios,
    }


def _at_most(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value <= threshold


def _at_least(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value >= threshold


def overhead_result(
    summaries: dict[str, dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """The JSON line: summaries by route, their comparisons, the targets met."""
    comparisons = {f"{a}_vs_{b}": compare(summaries[a], summaries[b]) for a, b in PAIRS}
    targets_met: dict[str, dict[str, bool | None]] = {"issue_2": {}, "issue_3": {}}
    for name in ("gateway", "gateway_unmetered"):
        comparison = comparisons[f"{name}_vs_direct"]
        targets_met["issue_2"][f"{name}_vs_direct_ttft_added_at_most_2_ms"] = _at_most(
            comparison["ttft_added_s"], TARGET_GATEWAY_TTFT_ADDED_S
        )
        targets_met["issue_2"][f"{name}_vs_direct_throughput_ratio_at_least_0_97"] = (
            _at_least(comparison["throughput_ratio"], TARGET_THROUGHPUT_RATIO)
        )
    metering = comparisons["gateway_vs_gateway_unmetered"]
    targets_met["issue_3"] = {
        "gateway_vs_gateway_unmetered_ttft_added_at_most_1_ms": _at_most(
            metering["ttft_added_s"], TARGET_METERING_TTFT_ADDED_S
        ),
        "gateway_vs_gateway_unmetered_throughput_ratio_at_least_0_97": _at_least(
            metering["throughput_ratio"], TARGET_THROUGHPUT_RATIO
        ),
    }
    metered, unmetered = summaries["gateway"], summaries["gateway_unmetered"]
    return {
        "benchmark": "gateway_overhead",
        "model": DEFAULT_MODEL_NAME,
        "rounds": args.rounds,
        "ttft_requests": args.ttft_requests,
        "ttft_max_tokens": args.ttft_max_tokens,
        "concurrency": args.concurrency,
        "throughput_requests": args.throughput_requests,
        "throughput_max_tokens": args.throughput_max_tokens,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "routes": summaries,
        "comparisons": comparisons,
        "metering_added_cpu_s_per_ttft_request": _difference(
            metered["ttft_proxy_cpu_s_per_request"],
            unmetered["ttft_proxy_cpu_s_per_request"],
        ),
        "metering_added_cpu_s_per_throughput_request": _difference(
            metered["throughput_proxy_cpu_s_per_request"],
            unmetered["throughput_proxy_cpu_s_per_request"],
        ),
        "targets_met": targets_met,
    }


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "null" if value is None else f"{value * scale:,.{digits}f}"


def _table(result: dict[str, Any]) -> Table:
    routes, comparisons = result["routes"], result["comparisons"]
    table = Table(
        title=f"gateway overhead: medians of {result['rounds']} rounds",
        caption="µs CPU/req: the gateway's CPU time per request, in the 1-stream "
        "(TTFT) and the many-stream (tokens/s) runs",
    )
    table.add_column("metric")
    for name in LABELS.values():
        table.add_column(name, justify="right")
    for a, b in PAIRS:
        table.add_column(f"{LABELS[a]} vs {LABELS[b]}", justify="right")

    def row(
        metric: str, key: str, scale: float, added: str = "", added_scale: float = 1
    ) -> None:
        values = [_fmt(summary[key], scale) for summary in routes.values()]
        extra = [
            _fmt(comparisons[f"{a}_vs_{b}"][added], added_scale, 3) if added else ""
            for a, b in PAIRS
        ]
        table.add_row(metric, *values, *extra)

    row("TTFT p50 ms, 1 stream (+ms)", "ttft_median_s", 1e3, "ttft_added_s", 1e3)
    row("TTFT p90 ms, 1 stream", "ttft_p90_s", 1e3)
    concurrency = result["concurrency"]
    row(
        f"tokens/s, {concurrency} streams (x)",
        "output_tokens_per_s",
        1,
        "throughput_ratio",
    )
    row("ITL p50 ms", "itl_median_s", 1e3)
    row("µs CPU/req, 1 stream", "ttft_proxy_cpu_s_per_request", 1e6)
    row("µs CPU/req, tokens/s run", "throughput_proxy_cpu_s_per_request", 1e6)
    row("gateway cores, tokens/s run", "proxy_cores", 1)
    row("engine cores, tokens/s run", "engine_cores", 1)
    table.add_row("errors", *(str(s["num_errors"]) for s in routes.values()))
    return table


def _print_report(result: dict[str, Any]) -> None:
    console.print(_table(result))
    for pair, comparison in result["comparisons"].items():
        by_round = " ".join(_fmt(t, 1e3) for t in comparison["ttft_added_s_by_round"])
        ratios = " ".join(
            _fmt(r, 1, 3) for r in comparison["throughput_ratio_by_round"]
        )
        console.print(f"{pair}: TTFT added by round (ms) {by_round}; ratios {ratios}")
    for kind in ("ttft", "throughput"):
        added_s = result[f"metering_added_cpu_s_per_{kind}_request"]
        console.print(
            f"metering adds {_fmt(added_s, 1e6, 1)} µs CPU per {kind} request"
        )
    verdicts = {True: "met", False: "NOT met", None: "unknown"}
    for issue, checks in result["targets_met"].items():
        for name, is_met in checks.items():
            console.print(f"{issue} target {name}: {verdicts[is_met]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--ttft-requests", type=int, default=60)
    parser.add_argument("--ttft-max-tokens", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--throughput-requests", type=int, default=64)
    parser.add_argument("--throughput-max-tokens", type=int, default=64)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    for name in (
        "rounds",
        "ttft_requests",
        "ttft_max_tokens",
        "concurrency",
        "throughput_requests",
        "throughput_max_tokens",
    ):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} is {getattr(args, name)}; use 1 or more"
            )
    start_benchmark(console, args.log_level)
    api_key = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="tokenmill-overhead-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        routes = []
        try:
            console.print("starting the vLLM engine (about a minute on a CPU)")
            checkpoint = prepare_default_model(args.home, console)
            engine, engine_url = start_vllm_engine(
                stack, workdir, checkpoint, DEFAULT_MODEL_NAME, api_key
            )
            routes.append(Route("direct", engine_url, api_key))
            for is_metered in (False, True):
                gateway, url = start_gateway(
                    stack,
                    workdir,
                    DEFAULT_MODEL_NAME,
                    engine_url + "/v1",
                    api_key,
                    is_metered=is_metered,
                )
                name = "gateway" if is_metered else "gateway_unmetered"
                routes.append(Route(name, url, None, gateway))
        except ServiceError as exc:
            console.print(f"gateway_overhead: {exc}", markup=False)
            sys.exit(1)
        asyncio.run(_run_rounds(routes, engine, args))
    result = overhead_result({route.name: summarize(route) for route in routes}, args)
    _print_report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    run_benchmark("gateway_overhead", main, console)
