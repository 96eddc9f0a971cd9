"""W4A16 by AWQ (Lin et al. 2023, arXiv:2306.00978): per-channel scales chosen on
calibration activations protect the salient weights, then round-to-nearest."""

from __future__ import annotations

from typing import Any

from quantize.methods.schemes import int4_weight_groups
from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    return [
        AWQModifier(),
        QuantizationModifier(
            config_groups=int4_weight_groups(plan), ignore=list(plan.ignore)
        ),
    ]
