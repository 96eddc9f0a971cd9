"""compressed-tensors schemes shared by the methods (toolchain environment only)."""

from __future__ import annotations

from typing import Any

from quantize.plan import Plan


def int4_weight_groups(plan: Plan) -> dict[str, Any]:
    """W4A16: int4 weights in groups of `plan.group_size` along the input dimension."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(
        num_bits=4,
        type="int",
        symmetric=plan.symmetric,
        strategy="group",
        group_size=plan.group_size,
        observer=plan.weight_observer,
    )
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def int8_weights_and_activations() -> dict[str, Any]:
    """W8A8: int8 weights per output channel, int8 activations per token, dynamic."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(
        num_bits=8, type="int", symmetric=True, strategy="channel"
    )
    activations = QuantizationArgs(
        num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True
    )
    return {
        "group_0": QuantizationScheme(
            targets=["Linear"], weights=weights, input_activations=activations
        )
    }


def int8_weights_only() -> dict[str, Any]:
    """W8A16: int8 weights per output channel; activations stay 16-bit."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(
        num_bits=8, type="int", symmetric=True, strategy="channel"
    )
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}
