"""W4A16 by GPTQ (Frantar et al. 2022, arXiv:2210.17323): int4 weights in groups,
each column's rounding error compensated on the columns not yet quantized, using the
calibration activations' Hessian."""

from __future__ import annotations

from typing import Any

from quantize.methods.schemes import int4_weight_groups
from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier

    return [
        GPTQModifier(
            config_groups=int4_weight_groups(plan),
            ignore=list(plan.ignore),
            dampening_frac=plan.dampening_frac,
        )
    ]
