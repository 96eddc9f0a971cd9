"""bitsandbytes: nothing to do offline. The model is registered with
`quantization: bitsandbytes`, and vLLM quantizes it while loading it on an NVIDIA GPU
(bitsandbytes has no CPU kernels in vLLM)."""

from __future__ import annotations

from typing import Any

from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    raise ValueError(
        f"bnb has no offline step (asked for {plan.bits} bits); the CLI registers it "
        "without running the toolchain"
    )
