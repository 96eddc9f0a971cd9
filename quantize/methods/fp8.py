"""Dynamic FP8 (E4M3): weights per channel, activations per token at run time; no
data. Served fast only by GPUs with FP8 units (Ada, Hopper and later)."""

from __future__ import annotations

from typing import Any

from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier

    return [
        QuantizationModifier(
            targets="Linear", scheme="FP8_DYNAMIC", ignore=list(plan.ignore)
        )
    ]
