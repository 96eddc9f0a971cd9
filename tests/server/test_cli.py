"""The `tokenmill` command as a person types it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tokenmill(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args, "--home", str(home)]
        if args[0] not in ("bench", "quantize")
        else [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_models_lists_the_configuration(tmp_path: Path) -> None:
    result = _tokenmill("models", "--port", "1", home=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "smollm2-135m" in result.stdout
    assert "not prepared yet" in result.stdout


def test_keys_are_created_listed_and_revoked(tmp_path: Path) -> None:
    created = _tokenmill("keys", "create", "team-a", home=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("tm-")

    listed = _tokenmill("keys", "list", home=tmp_path)
    assert "team-a" in listed.stdout
    assert key not in listed.stdout

    assert _tokenmill("keys", "revoke", "team-a", home=tmp_path).returncode == 0
    again = _tokenmill("keys", "revoke", "nobody", home=tmp_path)
    assert again.returncode == 2
    assert "nobody" in again.stderr


def test_serve_refuses_to_listen_openly_without_keys(tmp_path: Path) -> None:
    result = _tokenmill("serve", "--host", "0.0.0.0", home=tmp_path)

    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr


def test_bench_is_handed_to_its_own_module(tmp_path: Path) -> None:
    result = _tokenmill("bench", "--help", home=tmp_path)

    assert result.returncode == 0
    assert "calibrate" in result.stdout
