"""Engine processes: start, health, restart with backoff, and no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.config import ModelConfig
from server.engine_process import EngineProcess, engine_args, engine_env
from server.supervisor import Backoff, EngineState, EngineSupervisor
from tests.processes import is_running

MODEL = ModelConfig(name="fake", source="/nowhere")


def _mock_engine(runtime_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.mock_server",
        "--uds",
        str(runtime_dir / "fake.sock"),
    ]


def _process(tmp_path: Path, command: list[str]) -> EngineProcess:
    return EngineProcess(
        MODEL, "/nowhere", tmp_path, tmp_path / "fake.log", command=command
    )


async def _wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_engine_args_carry_the_model_options() -> None:
    model = ModelConfig.model_validate(
        {
            "name": "m",
            "source": "x",
            "aliases": ["a"],
            "engine": {
                "max_model_len": 512,
                "enforce_eager": True,
                "extra_args": ["--seed", "1"],
            },
        }
    )
    args = engine_args(model, "/ckpt", "/run/m.sock")

    assert args[:6] == ["--model", "/ckpt", "--served-model-name", "m", "a", "--uds"]
    for flag in (
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--enforce-eager",
    ):
        assert flag in args
    assert args[args.index("--max-model-len") + 1] == "512"
    assert args[args.index("--dtype") + 1] == "bfloat16"
    assert args[-2:] == ["--seed", "1"]
    assert not any("key" in arg for arg in args)


def test_int4_engines_keep_16_bit_activations_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VLLM_CPU_INT4_W4A8", raising=False)
    int4 = {
        "name": "q",
        "source": "x",
        "precision": "int4",
        "quantization": "compressed-tensors",
    }

    assert (
        engine_env(ModelConfig.model_validate(int4), "k")["VLLM_CPU_INT4_W4A8"] == "0"
    )
    w4a8 = {**int4, "engine": {"env": {"VLLM_CPU_INT4_W4A8": "1"}}}
    assert (
        engine_env(ModelConfig.model_validate(w4a8), "k")["VLLM_CPU_INT4_W4A8"] == "1"
    )
    bf16 = ModelConfig.model_validate({"name": "m", "source": "x"})
    assert "VLLM_CPU_INT4_W4A8" not in engine_env(bf16, "k")


async def test_supervisor_restarts_a_dead_engine(tmp_path: Path) -> None:
    supervisor = EngineSupervisor(
        lambda: _process(tmp_path, _mock_engine(tmp_path)),
        startup_timeout_s=20,
        backoff=Backoff(initial_s=0.1),
        health_interval_s=0.2,
    )
    task = asyncio.create_task(supervisor.run())
    try:
        await _wait_for(lambda: supervisor.state == EngineState.READY)
        assert supervisor.upstream is not None
        assert await supervisor.upstream.is_healthy()
        first_pid = supervisor.process.pid if supervisor.process else None
        assert first_pid is not None

        os.kill(first_pid, signal.SIGKILL)
        await _wait_for(lambda: supervisor.num_restarts == 1)
        await _wait_for(lambda: supervisor.state == EngineState.READY)

        assert supervisor.process is not None
        assert supervisor.process.pid != first_pid
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert supervisor.state == EngineState.STOPPED
    assert supervisor.process is not None
    assert supervisor.process.returncode is not None


async def test_failing_start_backs_off_and_retries(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = EngineSupervisor(
        lambda: _process(tmp_path, command),
        startup_timeout_s=20,
        backoff=Backoff(initial_s=0.05, max_s=0.1),
    )
    task = asyncio.create_task(supervisor.run())
    await _wait_for(lambda: supervisor.num_restarts >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    log = (tmp_path / "fake.log").read_text()
    assert log.count("tokenmill: starting fake") >= 3


async def test_engine_that_never_gets_healthy_is_stopped(tmp_path: Path) -> None:
    process = _process(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"])
    await process.start()
    with pytest.raises(Exception, match="not healthy after 1 s"):
        await process.wait_healthy(process.upstream(), timeout_s=1)
    await process.stop(grace_s=2)
    assert process.returncode is not None


def test_engine_exits_when_its_gateway_is_killed(tmp_path: Path) -> None:
    """SIGKILL runs no clean-up in the parent: the kernel must end the engine."""
    parent = f"""
import asyncio, sys
from pathlib import Path
from server.engine_process import EngineProcess
from tests.server.test_supervisor import _process, _mock_engine

async def main():
    tmp = Path({str(tmp_path)!r})
    process = _process(tmp, _mock_engine(tmp))
    await process.start()
    await process.wait_healthy(process.upstream(), 20)
    print(process.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""
    gateway = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True
    )
    try:
        assert gateway.stdout is not None
        engine_pid = int(gateway.stdout.readline())
        assert is_running(engine_pid)

        gateway.kill()
        gateway.wait()

        deadline = time.monotonic() + 10
        while is_running(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(engine_pid)
    finally:
        gateway.kill()
