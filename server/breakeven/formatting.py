"""Numbers as a reader wants them: dollars, token volumes, shares."""

from __future__ import annotations

import math

_TOKEN_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def usd(value: float | None, *, signed: bool = False) -> str:
    """$1,234 for large amounts, more digits for small ones; - for unknown."""
    if value is None:
        return "-"
    sign = "+" if signed and value > 0 else ("-" if value < 0 else "")
    amount = abs(value)
    if amount >= 100:
        text = f"${amount:,.0f}"
    elif amount >= 1:
        text = f"${amount:,.2f}"
    elif amount == 0:
        text = "$0"
    else:
        # Three significant digits, written out: $0.0801, $0.000685.
        decimals = 2 - math.floor(math.log10(amount))
        text = f"${amount:.{decimals}f}"
    return sign + text


def tokens(value: float | None) -> str:
    """12.3B, 820M, 4.5k tokens; - for unknown."""
    if value is None:
        return "-"
    for scale, unit in _TOKEN_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:,.3g}{unit}"
    return f"{value:,.0f}"


def gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def months(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} months"
