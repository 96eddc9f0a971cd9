"""The processes a benchmark starts, and the CPU time they use.

Each service runs in its own process group behind `server.parent_watch`, so that the
kernel ends it even when the benchmark is SIGKILLed; `start_service` puts its stop
on an `ExitStack`, which SIGTERMs the group and then SIGKILLs whatever is left. The
`start_*` helpers start one kind of service on a free loopback port, wait until it
answers, and return it with its base URL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
# Every pricing path runs in a metered gateway: explicit list prices, absorbed cost
# from the hardware's hourly price, and the API-equivalent cost.
GATEWAY_PRICING: dict[str, Any] = {
    "hardware": {"name": "bench", "usd_per_hour": 1.0},
    "prices": {
        "input_usd_per_mtok": 0.05,
        "cached_input_usd_per_mtok": 0.01,
        "output_usd_per_mtok": 0.2,
    },
    "api_reference": "openai/gpt-4o-mini",
}
_STOP_GRACE_S = 10.0
# One timed benchmark at a time on this machine: two at once would measure each
# other. The file holds the holder's pid and name while it runs.
BENCH_LOCK_PATH = Path("/tmp/tokenmill-bench.lock")
_LOCK_POLL_S = 2.0
_KEY_ENV = "TOKENMILL_BENCH_UPSTREAM_KEY"
_CPUCLOCK_SCHED = 2


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
                total += _process_cpu_s(process)
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


def _process_cpu_s(process: psutil.Process) -> float:
    # Linux keeps each process's CPU time in nanoseconds behind a clock id made
    # from its pid (clock_getcpuclockid(3)); cpu_times() counts 10 ms ticks, too
    # coarse for a round of twenty requests of a millisecond each.
    try:
        return time.clock_gettime((~process.pid << 3) | _CPUCLOCK_SCHED)
    except OSError:
        times = process.cpu_times()
        return float(times.user + times.system)


def own_cpu_s() -> float:
    """CPU seconds this process (the benchmark's client) has used so far."""
    return time.process_time()


class CpuClock:
    """CPU seconds that named processes use between `start()` and `used_s()`."""

    def __init__(self, sources: Mapping[str, Callable[[], float]]) -> None:
        self._sources = dict(sources)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: cpu_s() for name, cpu_s in self._sources.items()}

    def used_s(self) -> dict[str, float]:
        return {
            name: cpu_s() - self._started[name] for name, cpu_s in self._sources.items()
        }


def start_service(
    stack: contextlib.ExitStack,
    name: str,
    python_args: list[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
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


def start_mock(
    stack: contextlib.ExitStack, workdir: Path, api_key: str, num_tokens: int
) -> tuple[Service, str]:
    """The instant mock OpenAI server, answering `num_tokens` tokens a request."""
    port = free_port()
    args = ["-m", "bench.mock_server", "--port", str(port)]
    args += ["--tokens", str(num_tokens)]
    mock = start_service(stack, "mock", args, workdir, {"VLLM_API_KEY": api_key})
    url = f"http://127.0.0.1:{port}"
    mock.wait_ready(url + "/health")
    return mock, url


def start_passthrough_proxy(
    stack: contextlib.ExitStack, workdir: Path, upstream_url: str
) -> tuple[Service, str]:
    """`bench.passthrough_proxy` in front of `upstream_url` (an origin, no path)."""
    port = free_port()
    args = ["-m", "bench.passthrough_proxy", "--upstream", upstream_url]
    args += ["--port", str(port)]
    proxy = start_service(stack, "bare-proxy", args, workdir)
    url = f"http://127.0.0.1:{port}"
    proxy.wait_ready(url + "/health")
    return proxy, url


def gateway_models(model: str, upstream_url: str) -> dict[str, Any]:
    """A benchmark gateway's models.yaml: `model`, priced, forwarded upstream."""
    endpoint = {"url": upstream_url, "api_key_env": _KEY_ENV}
    return {"models": [{"name": model, "endpoint": endpoint, **GATEWAY_PRICING}]}


def start_gateway(
    stack: contextlib.ExitStack,
    workdir: Path,
    model: str,
    upstream_url: str,
    api_key: str,
    is_metered: bool = True,
) -> tuple[Service, str]:
    """A tokenmill gateway with `model` as a remote endpoint at `upstream_url`.

    Its models.yaml prices the model by `GATEWAY_PRICING`; `is_metered=False` starts
    it with `--metering false`, which leaves only the JSONL request log.
    """
    name = "gateway" if is_metered else "gateway-unmetered"
    gateway_dir = workdir / name
    gateway_dir.mkdir()
    config = gateway_dir / "models.yaml"
    config.write_text(json.dumps(gateway_models(model, upstream_url)))
    port = free_port()
    args = ["-m", "server.cli", "serve", "--config", str(config)]
    args += ["--home", str(gateway_dir / "home"), "--host", "127.0.0.1"]
    args += ["--port", str(port), "--metering", str(is_metered).lower()]
    # Settings ignore empty variables: the user's TOKENMILL_* (a Postgres ledger,
    # say) must not reach a benchmark's gateway.
    env = {var: "" for var in os.environ if var.startswith("TOKENMILL_")}
    env[_KEY_ENV] = api_key
    gateway = start_service(stack, name, args, gateway_dir, env)
    url = f"http://127.0.0.1:{port}"
    gateway.wait_ready(url + "/ready")
    return gateway, url


def start_vllm_engine(
    stack: contextlib.ExitStack,
    workdir: Path,
    checkpoint: Path,
    model: str,
    api_key: str,
    timeout_s: float = 600.0,
) -> tuple[Service, str]:
    """A vLLM OpenAI server for `checkpoint` on a loopback port, keyed by `api_key`."""
    port = free_port()
    args = ["-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint)]
    args += ["--served-model-name", model, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--max-model-len", "1024"]
    args += ["--enforce-eager", "--enable-prompt-tokens-details"]
    args += ["--disable-uvicorn-access-log"]
    # The key travels in the environment (vLLM reads VLLM_API_KEY), not in `ps`.
    env = {"VLLM_API_KEY": api_key, "VLLM_CPU_KVCACHE_SPACE": "1"}
    engine = start_service(stack, "engine", args, workdir, env)
    url = f"http://127.0.0.1:{port}"
    engine.wait_ready(url + "/health", timeout_s=timeout_s)
    return engine, url


def start_litellm(
    stack: contextlib.ExitStack, workdir: Path, upstream_url: str, api_key: str
) -> tuple[Service, str] | None:
    """LiteLLM's proxy with the model "mock" at `upstream_url`; None if absent."""
    if importlib.util.find_spec("litellm") is None:
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: mock\n    litellm_params:\n"
        f"      model: openai/mock\n      api_base: {upstream_url}\n"
        f"      api_key: {api_key}\n"
    )
    port = free_port()
    args = ["-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    # Untested here (litellm is not installed). The local price list keeps the
    # proxy from fetching its own from GitHub at start.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    litellm = start_service(stack, "litellm", args, workdir, env)
    url = f"http://127.0.0.1:{port}"
    litellm.wait_ready(url + "/health/liveliness", timeout_s=120)
    return litellm, url


def start_benchmark(console: Console, log_level: str) -> None:
    """Entry-point set-up shared by the gateway benchmarks."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr)
    if not console.is_terminal:
        # A pipe gets 80 columns, too few for the table's numbers.
        console.width = 120
    # A SIGTERM must unwind like Ctrl-C does, so that every started process ends.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_benchmark(name: str, main: Callable[[], None], console: Console) -> None:
    """Run a benchmark's `main`; an interrupt ends it with what it started."""
    try:
        main()
    except KeyboardInterrupt:
        console.print(f"{name}: interrupted; what it started is stopped")
        sys.exit(130)


@contextlib.contextmanager
def benchmark_lock(
    name: str,
    console: Console,
    path: Path = BENCH_LOCK_PATH,
    timeout_s: float = 1800.0,
) -> Iterator[None]:
    """Hold the machine's benchmark lock file while the block runs.

    Waits while another live process holds it; takes over a file whose pid has
    exited (a benchmark that was SIGKILLed leaves its file behind).
    """
    deadline = time.monotonic() + timeout_s
    is_waiting = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None and not psutil.pid_exists(holder[0]):
                logger.warning("taking over %s from exited pid %s", path, holder[0])
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{path} is still held after {timeout_s:.0f} s (by "
                    f"{_describe_holder(holder)}); wait for that benchmark, or "
                    "delete the file if no benchmark is running"
                ) from None
            if not is_waiting:
                console.print(
                    f"{name}: waiting for {_describe_holder(holder)} to release {path}",
                    markup=False,
                )
                is_waiting = True
            time.sleep(_LOCK_POLL_S)
            continue
        break
    mine = f"{os.getpid()} {name}\n"
    with os.fdopen(fd, "w") as lock_file:
        lock_file.write(mine)
    try:
        yield
    finally:
        # Only our own file: a takeover after a hang must not lose another's lock.
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == mine:
                path.unlink()


def _lock_holder(path: Path) -> tuple[int, str] | None:
    """(pid, name) from a lock file; None when unreadable or not ours in form."""
    try:
        pid_text, _, name = path.read_text().strip().partition(" ")
        return int(pid_text), name
    except (OSError, ValueError):
        return None


def _describe_holder(holder: tuple[int, str] | None) -> str:
    if holder is None:
        return "another process (the file names no pid)"
    return f"{holder[1] or 'a benchmark'} (pid {holder[0]})"
