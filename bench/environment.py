"""What a result depends on besides its configuration: code, engine, hardware.

Unknown values are None, never guesses; a run against an API that hides its engine
still records what it can.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]


def default_home() -> Path:
    """`$TOKENMILL_HOME`, else `$XDG_DATA_HOME/tokenmill`, as the server's default."""
    if home := os.environ.get("TOKENMILL_HOME"):
        return Path(home)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tokenmill"


def git_revision(repo: Path = REPO) -> str | None:
    """The checkout's commit, with `-dirty` when it has uncommitted changes."""
    try:
        revision = _git(repo, "rev-parse", "HEAD")
        is_dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("-dirty" if is_dirty else "")


def _git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return completed.stdout.strip()


def tokenmill_version() -> str:
    try:
        return importlib.metadata.version("tokenmill")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def engine_version(origin: str, api_key: str | None = None) -> str | None:
    """vLLM's `/version` at `origin` as `vllm X.Y.Z`; None when it has none."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(origin + "/version", headers=headers)
    with (
        contextlib.suppress(urllib.error.URLError, OSError, ValueError),
        urllib.request.urlopen(request, timeout=5) as response,
    ):
        version = orjson.loads(response.read()).get("version")
        return f"vllm {version}" if version else None
    return None


def host_description() -> dict[str, Any]:
    """The client machine: where the benchmark ran, not necessarily the engine."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "num_cpus": os.cpu_count(),
    }
