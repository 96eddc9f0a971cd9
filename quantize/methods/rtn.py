"""Round-to-nearest: no calibration data, min-max scales. The baseline every
calibrated method must beat, and a quick trial of a new model."""

from __future__ import annotations

from typing import Any

from quantize.methods.schemes import int4_weight_groups, int8_weights_and_activations
from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier

    groups = (
        int8_weights_and_activations() if plan.bits == 8 else int4_weight_groups(plan)
    )
    return [QuantizationModifier(config_groups=groups, ignore=list(plan.ignore))]
