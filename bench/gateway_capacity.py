"""How many requests the gateway itself can pass, with an upstream that costs nothing.

Method: an instant mock OpenAI server (`bench.mock_server`, 16 tokens a request)
stands in for the engine, so that every microsecond measured is spent in the
proxies and the client. Five targets stand in front of it: the mock directly (the
ceiling: only the client and the mock), the barest pass-through proxy on the
gateway's own stack (`bench.passthrough_proxy`, the baseline), the tokenmill
gateway as shipped (metered; its models.yaml names the mock as a remote endpoint
with prices, hardware cost and an API reference, so every pricing path runs), the
same gateway with `--metering false` (what metering costs is the difference), and
LiteLLM's proxy when `litellm` is installed. Each target gets, per round, a
non-streaming run (requests/s) and a streaming run (text chunks/s) of
`--concurrency` closed-loop clients for `--seconds`, after warm-up requests that
are not counted, and a streaming run of one client for `--seconds`: the time to
first token that each proxy adds to the mock's own, with no engine on the machine
to compete with it for the cores. Targets alternate within every round, in an
order that rotates from round to round, so that drift in a shared machine's load
spreads over all of them; the table shows medians over rounds. Everything runs on
this machine, so the client and the mock take CPU from the proxy under test: the
CPU columns (cores used, from each process's CPU time over the run) show which
process was the limit.
A proxy's CPU time per request depends least on the machine's load.

Targets: the gateway, metered and not, passes at least 1,500 requests/s and at
least 0.6 x the bare proxy's and adds at most 2 ms to the median time to first
token of one client; metered, at least 0.9 x the unmetered requests/s.

Run: `python -m bench.gateway_capacity [--rounds 3 --seconds 5 --concurrency 64]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.loadgen import Workload, run_load
from bench.services import (
    CpuClock,
    Service,
    ServiceError,
    own_cpu_s,
    run_benchmark,
    start_benchmark,
    start_gateway,
    start_litellm,
    start_mock,
    start_passthrough_proxy,
)

logger = logging.getLogger(__name__)
console = Console()

MOCK_TOKENS = 16
TARGET_GATEWAY_REQUESTS_PER_S = 1500.0
TARGET_GATEWAY_TO_BARE = 0.6
TARGET_METERED_TO_UNMETERED = 0.9
TARGET_TTFT_ADDED_S = 0.002
# Runs per target and round: (mode, streaming, clients or None for --concurrency).
MODES = (("whole", False, None), ("stream", True, None), ("single", True, 1))
# Targets by their key in the JSON line, with the label the table shows.
LABELS = {
    "direct": "direct to mock",
    "bare": "bare proxy",
    "gateway": "tokenmill",
    "gateway_unmetered": "tokenmill unmetered",
    "litellm": "LiteLLM",
}
# (numerator, denominator) of the throughput ratios in the JSON line.
_RATIO_PAIRS = (
    ("gateway", "bare"),
    ("gateway_unmetered", "bare"),
    ("gateway", "gateway_unmetered"),
    ("gateway", "litellm"),
)


@dataclass
class Target:
    """One way to reach the mock; `proxy` is the process in between, if any."""

    name: str
    base_url: str
    api_key: str | None
    proxy: Service | None
    rounds: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {mode: [] for mode, _, _ in MODES}
    )


def _start_targets(
    stack: contextlib.ExitStack, workdir: Path, api_key: str
) -> tuple[Service, list[Target]]:
    mock, mock_url = start_mock(stack, workdir, api_key, MOCK_TOKENS)
    targets = [Target("direct", mock_url, api_key, None)]
    bare, bare_url = start_passthrough_proxy(stack, workdir, mock_url)
    targets.append(Target("bare", bare_url, api_key, bare))
    for is_metered in (True, False):
        gateway, gateway_url = start_gateway(
            stack, workdir, "mock", mock_url + "/v1", api_key, is_metered=is_metered
        )
        name = "gateway" if is_metered else "gateway_unmetered"
        targets.append(Target(name, gateway_url, None, gateway))
    if litellm := start_litellm(stack, workdir, mock_url + "/v1", api_key):
        targets.append(Target("litellm", litellm[1], None, litellm[0]))
    else:
        console.print("LiteLLM: not installed; its row is null", markup=False)
    return mock, targets


async def _measure(
    target: Target,
    mock: Service,
    is_stream: bool,
    concurrency: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    workload = Workload(
        url=target.base_url + "/v1/chat/completions",
        model="mock",
        max_tokens=MOCK_TOKENS,
        is_stream=is_stream,
        api_key=target.api_key,
    )
    sources: dict[str, Callable[[], float]] = {"client": own_cpu_s, "mock": mock.cpu_s}
    if target.proxy is not None:
        sources["proxy"] = target.proxy.cpu_s
    cpu = CpuClock(sources)
    result = await run_load(
        workload,
        concurrency,
        duration_s=args.seconds,
        num_warmup=max(concurrency * 4, 20),
        on_start=cpu.start,
    )
    cores = {
        f"{name}_cores": used_s / result.duration_s
        for name, used_s in cpu.used_s().items()
    }
    if "proxy_cores" in cores and result.requests_per_s:
        cores["proxy_cpu_s_per_request"] = cores["proxy_cores"] / result.requests_per_s
    return {**result.as_dict(), **cores}


async def _run_rounds(
    mock: Service, targets: list[Target], args: argparse.Namespace
) -> None:
    for round_index in range(args.rounds):
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            for mode, is_stream, clients in MODES:
                row = await _measure(
                    target, mock, is_stream, clients or args.concurrency, args
                )
                target.rounds[mode].append(row)
                if mode == "single":
                    figure = f"{row['ttft_median_s'] * 1e3:9.3f} ms TTFT p50"
                elif mode == "stream":
                    figure = f"{row['chunks_per_s']:9.0f} chunks/s"
                else:
                    figure = f"{row['requests_per_s']:9.0f} req/s"
                console.print(
                    f"round {round_index + 1}/{args.rounds}  {LABELS[target.name]:<19} "
                    f"{mode:<6} {figure}  errors {row['num_errors']}"
                )


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(target: Target) -> dict[str, Any]:
    """Medians over rounds of what `target` did."""
    whole, stream = target.rounds["whole"], target.rounds["stream"]
    single = target.rounds["single"]
    summary: dict[str, Any] = {
        "requests_per_s": _median(whole, "requests_per_s"),
        "stream_chunks_per_s": _median(stream, "chunks_per_s"),
        "latency_median_s": _median(whole, "latency_median_s"),
        "proxy_cpu_s_per_request": _median(whole, "proxy_cpu_s_per_request"),
        "proxy_cpu_s_per_stream": _median(stream, "proxy_cpu_s_per_request"),
        "stream_ttft_median_s": _median(stream, "ttft_median_s"),
        "single_ttft_median_s": _median(single, "ttft_median_s"),
        "single_ttft_median_s_by_round": [row["ttft_median_s"] for row in single],
        "num_errors": sum(row["num_errors"] for row in whole + stream + single),
        "requests_per_s_by_round": [row["requests_per_s"] for row in whole],
        "stream_chunks_per_s_by_round": [row["chunks_per_s"] for row in stream],
    }
    for process in ("proxy", "mock", "client"):
        for mode, rows in (("whole", whole), ("stream", stream)):
            summary[f"{process}_cores_{mode}"] = _median(rows, f"{process}_cores")
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _at_least(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value >= threshold


def capacity_result(
    summaries: dict[str, dict[str, Any] | None], args: argparse.Namespace
) -> dict[str, Any]:
    """The JSON line: summaries by target, their ratios, and the targets met."""
    summaries = {name: summaries.get(name) for name in LABELS}
    ratios: dict[str, float | None] = {}
    for numerator, denominator in _RATIO_PAIRS:
        a, b = summaries[numerator] or {}, summaries[denominator] or {}
        for key, short in (
            ("requests_per_s", "requests"),
            ("stream_chunks_per_s", "stream_chunks"),
        ):
            ratio = _ratio(a.get(key), b.get(key))
            ratios[f"{numerator}_to_{denominator}_{short}"] = ratio

    metered, unmetered = (
        summaries["gateway"] or {},
        summaries["gateway_unmetered"] or {},
    )
    ttft_added_s = {
        name: _ttft_added_s(summaries[name], summaries["direct"])
        for name in LABELS
        if name != "direct"
    }
    targets_met: dict[str, dict[str, bool | None]] = {"issue_2": {}, "issue_3": {}}
    for name, summary in (("gateway", metered), ("gateway_unmetered", unmetered)):
        added_s = ttft_added_s[name]
        targets_met["issue_2"][f"{name}_ttft_added_at_1_client_at_most_2_ms"] = (
            None if added_s is None else added_s <= TARGET_TTFT_ADDED_S
        )
        targets_met["issue_2"][f"{name}_requests_per_s_at_least_1500"] = _at_least(
            summary.get("requests_per_s"), TARGET_GATEWAY_REQUESTS_PER_S
        )
        targets_met["issue_2"][f"{name}_to_bare_requests_at_least_0_6"] = _at_least(
            ratios[f"{name}_to_bare_requests"], TARGET_GATEWAY_TO_BARE
        )
    targets_met["issue_3"]["gateway_to_gateway_unmetered_requests_at_least_0_9"] = (
        _at_least(
            ratios["gateway_to_gateway_unmetered_requests"], TARGET_METERED_TO_UNMETERED
        )
    )
    return {
        "benchmark": "gateway_capacity",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "mock_tokens_per_request": MOCK_TOKENS,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "targets": summaries,
        "ratios": ratios,
        # Median over rounds of each round's added TTFT at one client.
        "ttft_added_at_1_client_s": ttft_added_s,
        # The gateway's CPU time that metering adds: the figure a busy machine
        # disturbs least.
        "metering_added_cpu_s_per_request": _difference(
            metered.get("proxy_cpu_s_per_request"),
            unmetered.get("proxy_cpu_s_per_request"),
        ),
        "metering_added_cpu_s_per_stream": _difference(
            metered.get("proxy_cpu_s_per_stream"),
            unmetered.get("proxy_cpu_s_per_stream"),
        ),
        "targets_met": targets_met,
    }


def _ttft_added_s(
    proxied: dict[str, Any] | None, direct: dict[str, Any] | None
) -> float | None:
    if not proxied or not direct:
        return None
    pairs = zip(
        proxied["single_ttft_median_s_by_round"],
        direct["single_ttft_median_s_by_round"],
        strict=True,
    )
    added = [a - b for a, b in pairs if a is not None and b is not None]
    return statistics.median(added) if added else None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "null" if value is None else f"{value * scale:,.{digits}f}"


def _table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"gateway capacity: {result['concurrency']} clients, medians of "
        f"{result['rounds']} rounds of {result['seconds']:g} s",
        caption="chunks/s: streaming, one token a chunk; µs/req and µs/stream: the "
        "proxy's CPU time per request; cores: CPU cores used by proxy / mock / "
        "client in the req/s runs; TTFT 1 client: median time to first token of "
        "one streaming client",
    )
    table.add_column("target")
    columns = ("req/s", "chunks/s", "µs/req", "µs/stream", "TTFT 1 client ms")
    for column in (*columns, "errors", "cores"):
        table.add_column(column, justify="right")
    for name, summary in result["targets"].items():
        if summary is None:
            table.add_row(LABELS[name], "not installed", *["null"] * 6)
            continue
        cores = (summary[f"{p}_cores_whole"] for p in ("proxy", "mock", "client"))
        table.add_row(
            LABELS[name],
            _fmt(summary["requests_per_s"]),
            _fmt(summary["stream_chunks_per_s"]),
            _fmt(summary["proxy_cpu_s_per_request"], 1e6),
            _fmt(summary["proxy_cpu_s_per_stream"], 1e6),
            _fmt(summary["single_ttft_median_s"], 1e3, 3),
            str(summary["num_errors"]),
            "/".join(_fmt(value, digits=2) for value in cores),
        )
    return table


def _print_report(result: dict[str, Any]) -> None:
    console.print(_table(result))
    for numerator, denominator in _RATIO_PAIRS:
        for short in ("requests", "stream_chunks"):
            ratio = result["ratios"][f"{numerator}_to_{denominator}_{short}"]
            console.print(
                f"{LABELS[numerator]} / {LABELS[denominator]} {short}/s: "
                f"{_fmt(ratio, digits=2)}"
            )
    for name, added_s in result["ttft_added_at_1_client_s"].items():
        console.print(
            f"{LABELS[name]} adds {_fmt(added_s, 1e3, 3)} ms to TTFT p50 at 1 client"
        )
    for unit in ("request", "stream"):
        added_s = result[f"metering_added_cpu_s_per_{unit}"]
        console.print(f"metering adds {_fmt(added_s, 1e6, 1)} µs CPU per {unit}")
    verdicts = {True: "met", False: "NOT met", None: "unknown"}
    for issue, checks in result["targets_met"].items():
        for name, is_met in checks.items():
            console.print(f"{issue} target {name}: {verdicts[is_met]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if min(args.rounds, args.concurrency) < 1 or args.seconds <= 0:
        parser.error(
            f"--rounds {args.rounds}, --concurrency {args.concurrency} and "
            f"--seconds {args.seconds:g} must all be positive"
        )
    start_benchmark(console, args.log_level)
    api_key = secrets.token_urlsafe(16)
    with (
        tempfile.TemporaryDirectory(prefix="tokenmill-capacity-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        try:
            mock, targets = _start_targets(stack, Path(tmp), api_key)
        except ServiceError as exc:
            console.print(f"gateway_capacity: {exc}", markup=False)
            sys.exit(1)
        asyncio.run(_run_rounds(mock, targets, args))
    result = capacity_result({t.name: summarize(t) for t in targets}, args)
    _print_report(result)
    print(json.dumps(result))


if __name__ == "__main__":
    run_benchmark("gateway_capacity", main, console)
