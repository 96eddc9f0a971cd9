"""What the gateway costs a client in front of a real vLLM engine.

Method: one vLLM engine (the default SmolLM2-135M, on a loopback TCP port, with a
random API key) and one tokenmill gateway whose models.yaml names that engine as a
remote endpoint, so both routes end at the same engine and differ only by the
gateway. Each route keeps one client session (open connections) for the whole
run. After warm-up requests on both routes, every round measures:

- latency: one client, streaming, a short prompt, `--ttft-requests` requests of
  `--ttft-max-tokens` tokens per route. The two routes take turns request by
  request (the first of each pair switching sides), so that both meet the same
  moments of a shared machine; the round's median TTFT per route. The gateway's
  cost is the median over rounds of (gateway - direct). Target: at most 2 ms.
- throughput: `--concurrency` streams, `--throughput-requests` requests of
  `--throughput-max-tokens` tokens with `ignore_eos` (every request decodes all of
  its tokens); output tokens/s from `usage`, over the time from the first request
  to the last response. The routes go one after the other, in an order that
  alternates from round to round; the gateway/direct ratio per round, median over
  rounds. Target: at least 0.97.

The engine, the gateway and this client share the machine's cores, so on a busy
machine a TTFT difference of a few ms drowns in noise; the cores each process used
during the throughput runs are reported beside the numbers. The gateway's CPU time
per request, which does not depend on the machine's load, comes from
`bench.gateway_capacity`.

Run: `python -m bench.gateway_overhead [--rounds 4] [--home DIR]`.
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
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.gateway_capacity import (
    REPO,
    Service,
    ServiceError,
    free_port,
    start_gateway,
    start_service,
)
from bench.loadgen import LoadGenerator, Workload, percentile
from server.default_model import DEFAULT_MODEL_NAME, prepare_default_model

logger = logging.getLogger(__name__)
console = Console()

# The checkpoint the e2e tests prepare; reused, so no run pays for it twice.
DEFAULT_HOME = REPO / ".tokenmill" / "test-home"
TARGET_TTFT_ADDED_S = 0.002
TARGET_THROUGHPUT_RATIO = 0.97
_PROMPT = "Name three colours."
_ENGINE_START_TIMEOUT_S = 600.0


def _start_engine(
    stack: contextlib.ExitStack, workdir: Path, home: Path, api_key: str
) -> tuple[Service, str]:
    checkpoint = prepare_default_model(home, console)
    port = free_port()
    args = ["-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint)]
    args += ["--served-model-name", DEFAULT_MODEL_NAME, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--max-model-len", "1024"]
    args += ["--enforce-eager", "--enable-prompt-tokens-details"]
    args += ["--disable-uvicorn-access-log"]
    # The key travels in the environment (vLLM reads VLLM_API_KEY), not in `ps`.
    env = {"VLLM_API_KEY": api_key, "VLLM_CPU_KVCACHE_SPACE": "1"}
    engine = start_service(stack, "engine", args, workdir, env)
    url = f"http://127.0.0.1:{port}"
    engine.wait_ready(url + "/health", timeout_s=_ENGINE_START_TIMEOUT_S)
    return engine, url


# Compared by identity: routes key the dict of their clients.
@dataclasses.dataclass(eq=False)
class Route:
    """One way to the engine, and what each round measured on it."""

    name: str
    base_url: str
    api_key: str | None
    ttft_s_by_round: list[list[float]] = dataclasses.field(default_factory=list)
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


async def _run_rounds(
    routes: list[Route], engine: Service, gateway: Service, args: argparse.Namespace
) -> None:
    async with LoadGenerator() as direct_client, LoadGenerator() as gateway_client:
        clients = dict(zip(routes, (direct_client, gateway_client), strict=True))
        for route, client in clients.items():
            await client.run(route.workload(args.ttft_max_tokens), 1, num_requests=3)
            warmup = route.workload(8, ignore_eos=True)
            await client.run(warmup, args.concurrency, num_requests=args.concurrency)
        for round_index in range(args.rounds):
            label = f"round {round_index + 1}/{args.rounds}"
            await _measure_ttft(clients, args, label)
            order = routes if round_index % 2 == 0 else routes[::-1]
            for route in order:
                workload = route.workload(args.throughput_max_tokens, ignore_eos=True)
                cpu_before = (gateway.cpu_s(), engine.cpu_s())
                result = await clients[route].run(
                    workload, args.concurrency, num_requests=args.throughput_requests
                )
                gateway_cpu_s = gateway.cpu_s() - cpu_before[0]
                engine_cpu_s = engine.cpu_s() - cpu_before[1]
                route.throughput.append(
                    {
                        **result.as_dict(),
                        "gateway_cores": gateway_cpu_s / result.duration_s,
                        "engine_cores": engine_cpu_s / result.duration_s,
                    }
                )
                console.print(
                    f"{label}  {route.name:<8} {result.output_tokens_per_s:6.1f} "
                    f"output tokens/s  errors {result.num_errors}"
                )


async def _measure_ttft(
    clients: dict[Route, LoadGenerator], args: argparse.Namespace, label: str
) -> None:
    # Requests alternate between the routes one by one, the first of each pair
    # switching sides, so that both see the same moments of a shared machine.
    routes = list(clients)
    for route in routes:
        route.ttft_s_by_round.append([])
        # The keep-alive connections may have closed while the other route ran.
        await clients[route].run(
            route.workload(args.ttft_max_tokens), 1, num_requests=1
        )
    for index in range(args.ttft_requests):
        for route in routes if index % 2 == 0 else routes[::-1]:
            workload = route.workload(args.ttft_max_tokens)
            result = await clients[route].run(workload, 1, num_requests=1)
            if result.ttft_median_s is None:
                route.num_ttft_errors += 1
            else:
                route.ttft_s_by_round[-1].append(result.ttft_median_s)
    for route in routes:
        console.print(
            f"{label}  {route.name:<8} TTFT "
            f"{_ms(_median(route.ttft_s_by_round[-1]))} ms"
        )


def _ms(value: float | None) -> str:
    return "null" if value is None else f"{value * 1000:.2f}"


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _summary(route: Route) -> dict[str, Any]:
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
        "gateway_cores": _median([r["gateway_cores"] for r in throughput]),
        "engine_cores": _median([r["engine_cores"] for r in throughput]),
    }


def _report(direct: Route, gateway: Route, args: argparse.Namespace) -> None:
    summaries = {"direct": _summary(direct), "gateway": _summary(gateway)}
    ttft_added_s = _median(
        [
            g - d if g is not None and d is not None else None
            for d, g in zip(
                summaries["direct"]["ttft_median_s_by_round"],
                summaries["gateway"]["ttft_median_s_by_round"],
                strict=True,
            )
        ]
    )
    throughput_ratio = _median(
        [
            g["output_tokens_per_s"] / d["output_tokens_per_s"]
            if d["output_tokens_per_s"]
            else None
            for d, g in zip(direct.throughput, gateway.throughput, strict=True)
        ]
    )
    checks = {
        "ttft_added_at_most_2_ms": ttft_added_s is not None
        and ttft_added_s <= TARGET_TTFT_ADDED_S,
        "throughput_ratio_at_least_0_97": throughput_ratio is not None
        and throughput_ratio >= TARGET_THROUGHPUT_RATIO,
    }

    d, g = summaries["direct"], summaries["gateway"]
    table = Table(title=f"gateway overhead: medians of {args.rounds} rounds")
    for column in ("metric", "direct", "gateway", "difference", "target"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    verdict = {True: "met", False: "NOT met"}
    table.add_row(
        "TTFT p50 ms, 1 stream",
        _ms(d["ttft_median_s"]),
        _ms(g["ttft_median_s"]),
        f"{_ms(ttft_added_s)} ms",
        f"<=2 ms {verdict[checks['ttft_added_at_most_2_ms']]}",
    )
    table.add_row(
        "TTFT p90 ms, 1 stream", _ms(d["ttft_p90_s"]), _ms(g["ttft_p90_s"]), "", ""
    )
    ratio_text = "null" if throughput_ratio is None else f"{throughput_ratio:.3f} x"
    table.add_row(
        f"tokens/s, {args.concurrency} streams",
        f"{d['output_tokens_per_s'] or 0:.1f}",
        f"{g['output_tokens_per_s'] or 0:.1f}",
        ratio_text,
        f">=0.97 {verdict[checks['throughput_ratio_at_least_0_97']]}",
    )
    table.add_row("ITL p50 ms", _ms(d["itl_median_s"]), _ms(g["itl_median_s"]), "", "")
    table.add_row(
        "cores: gateway/engine",
        f"{d['gateway_cores']:.2f}/{d['engine_cores']:.2f}",
        f"{g['gateway_cores']:.2f}/{g['engine_cores']:.2f}",
        "",
        "",
    )
    table.add_row("errors", str(d["num_errors"]), str(g["num_errors"]), "", "")
    console.print(table)
    result = {
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
        "ttft_added_s": ttft_added_s,
        "throughput_ratio": throughput_ratio,
        "targets_met": checks,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ttft-requests", type=int, default=20)
    parser.add_argument("--ttft-max-tokens", type=int, default=16)
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
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    # A SIGTERM must unwind like Ctrl-C does, so that every started process ends.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    api_key = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="tokenmill-overhead-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        try:
            console.print("starting the vLLM engine (about a minute on a CPU)")
            engine, engine_url = _start_engine(stack, workdir, args.home, api_key)
            gateway, gateway_url = start_gateway(
                stack, workdir, DEFAULT_MODEL_NAME, engine_url + "/v1", api_key
            )
        except ServiceError as exc:
            console.print(f"gateway_overhead: {exc}", markup=False)
            sys.exit(1)
        direct = Route("direct", engine_url, api_key)
        through_gateway = Route("gateway", gateway_url, None)
        routes = [direct, through_gateway]
        asyncio.run(_run_rounds(routes, engine, gateway, args))
    _report(direct, through_gateway, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        console.print("gateway_overhead: interrupted; what it started is stopped")
        sys.exit(130)
