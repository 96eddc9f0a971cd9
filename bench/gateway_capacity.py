"""How many requests the gateway itself can pass, with an upstream that costs nothing.

Method: an instant mock OpenAI server (`bench.mock_server`, 16 tokens a request)
stands in for the engine, so that every microsecond measured is spent in the
proxies and the client. Four targets stand in front of it: the mock directly (the
ceiling: only the client and the mock), the barest pass-through proxy on the
gateway's own stack (`bench.passthrough_proxy`, the baseline), the tokenmill
gateway (a remote endpoint to the mock in a temporary models.yaml and home), and
LiteLLM's proxy when `litellm` is installed. Each target gets, per round, a
non-streaming run (requests/s) and a streaming run (text chunks/s) of
`--concurrency` closed-loop clients for `--seconds`, after warm-up requests that
are not counted. Targets alternate within every round, in an order that rotates
from round to round, so that drift in a shared machine's load spreads over all of
them; the table shows medians over rounds. Everything runs on this machine, so the
client and the mock take CPU from the proxy under test: the CPU columns (cores
used, from each process's CPU time over the run) show which process was the limit.

Run: `python -m bench.gateway_capacity [--rounds 3 --seconds 5 --concurrency 64]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from bench.loadgen import Workload, run_load

logger = logging.getLogger(__name__)
console = Console()

REPO = Path(__file__).resolve().parents[1]
MOCK_TOKENS = 16
TARGET_GATEWAY_REQUESTS_PER_S = 1500.0
TARGET_GATEWAY_TO_BARE = 0.6
_STOP_GRACE_S = 10.0
_KEY_ENV = "TOKENMILL_BENCH_UPSTREAM_KEY"
# Targets by their key in the JSON line, with the label the table shows.
LABELS = {
    "direct": "direct to mock",
    "bare": "bare proxy",
    "gateway": "tokenmill",
    "litellm": "LiteLLM",
}


# The process helpers below serve bench.gateway_overhead as well.
class ServiceError(Exception):
    """A process the benchmark needs exited or never got ready."""


@dataclass
class Service:
    """A process the benchmark started, in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait_ready(
        self, url: str, timeout_s: float = 60.0, headers: dict[str, str] | None = None
    ) -> None:
        """Poll `url` until it answers 200; raise if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {self.process.returncode} while "
                    f"starting; the end of {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(urllib.error.URLError, OSError):
                request = urllib.request.Request(url, headers=headers or {})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.25)
        raise ServiceError(
            f"{self.name} was not ready at {url} after {timeout_s:.0f} s; the end "
            f"of {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, num_chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-num_chars:]

    def cpu_s(self) -> float:
        """CPU seconds used so far by the process and its children."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it."""
        pgid = self.process.pid
        try:
            if self.process.poll() is None:
                _signal_group(pgid, signal.SIGTERM)
                self.process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", self.name)
        finally:
            # Also after a second Ctrl-C; and children (vLLM's engine core) can
            # outlive the group's leader by a moment.
            _signal_group(pgid, signal.SIGKILL)
            self.process.wait()
        logger.info("%s (pid %s) stopped", self.name, pgid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_service(
    stack: contextlib.ExitStack,
    name: str,
    python_args: list[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Service:
    """Start `python python_args...`, to be stopped when `stack` closes."""
    log_path = log_dir / f"{name}.log"
    # parent_watch makes the kernel end the service should this benchmark be
    # SIGKILLed, when no clean-up code runs.
    watch = [sys.executable, "-m", "server.parent_watch", str(os.getpid()), "--"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*watch, sys.executable, *python_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
    service = Service(name, process, log_path)
    stack.callback(service.stop)
    logger.info("%s started: pid %s, log %s", name, process.pid, log_path)
    return service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    stack: contextlib.ExitStack,
    workdir: Path,
    model: str,
    upstream_url: str,
    api_key: str,
) -> tuple[Service, str]:
    """A tokenmill gateway with `model` as a remote endpoint; returns its base URL."""
    config = workdir / "models.yaml"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": model,
                        "endpoint": {"url": upstream_url, "api_key_env": _KEY_ENV},
                    }
                ]
            }
        )
    )
    port = free_port()
    args = ["-m", "server.cli", "serve", "--config", str(config)]
    args += ["--home", str(workdir / "home"), "--port", str(port)]
    gateway = start_service(stack, "gateway", args, workdir, {_KEY_ENV: api_key})
    base_url = f"http://127.0.0.1:{port}"
    gateway.wait_ready(base_url + "/ready")
    return gateway, base_url


@dataclass
class Target:
    """One way to reach the mock; `proxy` is the process in between, if any."""

    name: str
    base_url: str
    api_key: str | None
    proxy: Service | None
    rounds: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"whole": [], "stream": []}
    )


def _start_targets(
    stack: contextlib.ExitStack, workdir: Path, api_key: str
) -> tuple[Service, list[Target]]:
    port = free_port()
    mock_url = f"http://127.0.0.1:{port}"
    mock_args = ["-m", "bench.mock_server", "--port", str(port)]
    mock_args += ["--tokens", str(MOCK_TOKENS)]
    env = {"VLLM_API_KEY": api_key}
    mock = start_service(stack, "mock", mock_args, workdir, env)
    mock.wait_ready(mock_url + "/health")
    targets = [Target("direct", mock_url, api_key, None)]

    port = free_port()
    bare_url = f"http://127.0.0.1:{port}"
    bare_args = ["-m", "bench.passthrough_proxy", "--upstream", mock_url]
    bare_args += ["--port", str(port)]
    bare = start_service(stack, "bare-proxy", bare_args, workdir)
    bare.wait_ready(bare_url + "/health")
    targets.append(Target("bare", bare_url, api_key, bare))

    gateway, gateway_url = start_gateway(
        stack, workdir, "mock", mock_url + "/v1", api_key
    )
    targets.append(Target("gateway", gateway_url, None, gateway))

    if litellm := _start_litellm(stack, workdir, mock_url + "/v1", api_key):
        targets.append(litellm)
    return mock, targets


def _start_litellm(
    stack: contextlib.ExitStack, workdir: Path, upstream_url: str, api_key: str
) -> Target | None:
    if importlib.util.find_spec("litellm") is None:
        console.print("LiteLLM: not installed; its row is null", markup=False)
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: mock\n    litellm_params:\n"
        f"      model: openai/mock\n      api_base: {upstream_url}\n"
        f"      api_key: {api_key}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    # Untested here (litellm is not installed). The local price list keeps the
    # proxy from fetching its own from GitHub at start.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    litellm = start_service(stack, "litellm", args, workdir, env)
    litellm.wait_ready(url + "/health/liveliness", timeout_s=120)
    return Target("litellm", url, None, litellm)


async def _measure(
    target: Target, mock: Service, is_stream: bool, args: argparse.Namespace
) -> dict[str, Any]:
    workload = Workload(
        url=target.base_url + "/v1/chat/completions",
        model="mock",
        max_tokens=MOCK_TOKENS,
        is_stream=is_stream,
        api_key=target.api_key,
    )
    processes: dict[str, Callable[[], float]] = {
        "client": _own_cpu_s,
        "mock": mock.cpu_s,
    }
    if target.proxy is not None:
        processes["proxy"] = target.proxy.cpu_s
    cpu_before: dict[str, float] = {}

    def take_cpu_snapshot() -> None:
        cpu_before.update((name, cpu_s()) for name, cpu_s in processes.items())

    result = await run_load(
        workload,
        args.concurrency,
        duration_s=args.seconds,
        num_warmup=args.concurrency * 4,
        on_start=take_cpu_snapshot,
    )
    cores = {
        f"{name}_cores": (cpu_s() - cpu_before[name]) / result.duration_s
        for name, cpu_s in processes.items()
    }
    if "proxy_cores" in cores and result.requests_per_s:
        cores["proxy_cpu_s_per_request"] = cores["proxy_cores"] / result.requests_per_s
    return {**result.as_dict(), **cores}


def _own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def _run_rounds(
    mock: Service, targets: list[Target], args: argparse.Namespace
) -> None:
    for round_index in range(args.rounds):
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            for mode in ("whole", "stream"):
                row = await _measure(target, mock, mode == "stream", args)
                target.rounds[mode].append(row)
                rate = row["requests_per_s" if mode == "whole" else "chunks_per_s"]
                unit = "req/s" if mode == "whole" else "chunks/s"
                console.print(
                    f"round {round_index + 1}/{args.rounds}  {LABELS[target.name]:<14} "
                    f"{mode:<6} {rate:9.0f} {unit}  errors {row['num_errors']}"
                )


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def _summary(target: Target) -> dict[str, Any]:
    whole, stream = target.rounds["whole"], target.rounds["stream"]
    summary: dict[str, Any] = {
        "requests_per_s": _median(whole, "requests_per_s"),
        "stream_chunks_per_s": _median(stream, "chunks_per_s"),
        "latency_median_s": _median(whole, "latency_median_s"),
        "proxy_cpu_s_per_request": _median(whole, "proxy_cpu_s_per_request"),
        "proxy_cpu_s_per_stream": _median(stream, "proxy_cpu_s_per_request"),
        "stream_ttft_median_s": _median(stream, "ttft_median_s"),
        "num_errors": sum(row["num_errors"] for row in whole + stream),
        "requests_per_s_by_round": [row["requests_per_s"] for row in whole],
        "stream_chunks_per_s_by_round": [row["chunks_per_s"] for row in stream],
    }
    for process in ("proxy", "mock", "client"):
        for mode, rows in (("whole", whole), ("stream", stream)):
            summary[f"{process}_cores_{mode}"] = _median(rows, f"{process}_cores")
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "null" if value is None else f"{value * scale:,.{digits}f}"


def _table(summaries: dict[str, dict[str, Any] | None], args: Any) -> Table:
    table = Table(
        title=f"gateway capacity: {args.concurrency} clients, medians of "
        f"{args.rounds} rounds of {args.seconds:g} s",
        caption="chunks/s: streaming, one token a chunk; µs/req: the proxy's "
        "CPU time per request; cores: CPU cores used by proxy / mock / client; "
        "both in the req/s runs",
    )
    table.add_column("target")
    for column in ("req/s", "chunks/s", "µs/req", "errors", "cores"):
        table.add_column(column, justify="right")
    for name, summary in summaries.items():
        if summary is None:
            table.add_row(LABELS[name], "not installed", "null", "null", "null", "null")
            continue
        cores = (summary[f"{p}_cores_whole"] for p in ("proxy", "mock", "client"))
        table.add_row(
            LABELS[name],
            _fmt(summary["requests_per_s"]),
            _fmt(summary["stream_chunks_per_s"]),
            _fmt(summary["proxy_cpu_s_per_request"], 1e6),
            str(summary["num_errors"]),
            "/".join(_fmt(value, digits=2) for value in cores),
        )
    return table


def _report(targets: list[Target], args: argparse.Namespace) -> None:
    summaries: dict[str, dict[str, Any] | None] = {t.name: _summary(t) for t in targets}
    summaries.setdefault("litellm", None)
    console.print(_table(summaries, args))

    gateway = summaries["gateway"] or {}
    ratios: dict[str, float | None] = {}
    for other in ("bare", "litellm"):
        baseline = summaries[other] or {}
        for key, short in (
            ("requests_per_s", "requests"),
            ("stream_chunks_per_s", "stream_chunks"),
        ):
            ratio = _ratio(gateway.get(key), baseline.get(key))
            ratios[f"gateway_to_{other}_{short}"] = ratio
            console.print(f"gateway / {other} {short}/s: {_fmt(ratio, digits=2)}")
    checks = {
        "gateway_requests_per_s_at_least_1500": (gateway.get("requests_per_s") or 0)
        >= TARGET_GATEWAY_REQUESTS_PER_S,
        "gateway_to_bare_requests_at_least_0_6": (
            ratios["gateway_to_bare_requests"] or 0
        )
        >= TARGET_GATEWAY_TO_BARE,
    }
    for name, is_met in checks.items():
        console.print(f"target {name}: {'met' if is_met else 'NOT met'}")
    result = {
        "benchmark": "gateway_capacity",
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "mock_tokens_per_request": MOCK_TOKENS,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "targets": summaries,
        "ratios": ratios,
        "targets_met": checks,
    }
    print(json.dumps(result))


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
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    # A SIGTERM must unwind like Ctrl-C does, so that every started process ends.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
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
    _report(targets, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        console.print("gateway_capacity: interrupted; what it started is stopped")
        sys.exit(130)
