"""What the what-if report says, as a document and as JSON."""

from __future__ import annotations

from typing import Any

from server.breakeven.document import Bullets, Document, Heading, Paragraph, Table
from server.breakeven.formatting import tokens, usd
from server.breakeven.whatif import Outcome, WhatIf


def whatif_document(result: WhatIf, title: str) -> Document:
    document = Document(title)
    has_self = result.baseline.self_hosted_monthly_usd is not None
    base = result.baseline
    document.add(
        Paragraph(
            f"Today: {usd(base.api_monthly_usd)}/month on the API at list prices"
            + (
                f", {usd(base.self_hosted_monthly_usd)}/month self-hosted"
                if has_self
                else ""
            )
            + (
                f" (break-even at {tokens(base.break_even_monthly_tokens)} tokens a "
                "month)"
                if base.break_even_monthly_tokens
                else ""
            )
            + ". The levers are listed in the order a careful team pulls them: "
            "first those that leave every answer as it is, last those that change "
            "the model.",
            is_lead=True,
        ),
        Heading("Each lever alone"),
        _outcome_table(result.alone, base, has_self, cumulative=False),
        Heading("Pulled one after another"),
        _outcome_table(result.combined, base, has_self, cumulative=True),
    )
    if result.quantize_factor is not None:
        document.add(Heading("Quantization factor"), *_quantization_blocks(result))
    if result.notes:
        document.add(Heading("Notes"), Bullets(result.notes))
    return document


def whatif_json(result: WhatIf) -> dict[str, Any]:
    def outcome(o: Outcome) -> dict[str, Any]:
        return {
            "lever": o.lever,
            "setting": o.setting,
            "api_monthly_usd": o.api_monthly_usd,
            "self_hosted_monthly_usd": o.self_hosted_monthly_usd,
            "num_gpus": o.num_gpus,
            "break_even_monthly_tokens": o.break_even_monthly_tokens,
        }

    return {
        "baseline": outcome(result.baseline),
        "alone": [outcome(o) for o in result.alone],
        "combined": [outcome(o) for o in result.combined],
        "quantization": _quantization_json(result),
        "notes": result.notes,
    }


def _quantization_json(result: WhatIf) -> dict[str, Any] | None:
    if result.quantize_factor is None:
        return None
    measured = result.quantized
    return {
        "capacity_factor": result.quantize_factor,
        "source": result.quantize_factor_source,
        "variant": None if measured is None else measured.model,
        "precision": None if measured is None else measured.precision,
        "baseline": None if measured is None else measured.baseline,
        "gate_verdict": None if measured is None else measured.gate_verdict,
        "ppl_increase_pct": None if measured is None else measured.ppl_increase_pct,
    }


def _quantization_blocks(result: WhatIf) -> list[Paragraph | Table]:
    factor, measured = result.quantize_factor, result.quantized
    if measured is None:
        return [
            Paragraph(
                f"Capacity x{factor:g}, {result.quantize_factor_source}; "
                "`tokenmill bench compare` measures it, with the quality change."
            )
        ]
    blocks: list[Paragraph | Table] = [
        Paragraph(
            f"Capacity x{factor:.2f}: {measured.model} "
            f"({measured.precision or 'precision unknown'}) against "
            f"{measured.baseline}, measured by {measured.source}. Quality gate: "
            f"{measured.gate_verdict or 'unknown (no quantize report)'}."
        )
    ]
    if measured.ppl_increase_pct:
        rows = [
            [text, f"{pct:+.2f}%"]
            for text, pct in sorted(measured.ppl_increase_pct.items())
        ]
        caption = f"{measured.model}'s perplexity over {measured.baseline}'s."
        blocks.append(Table(["text", "perplexity change"], rows, caption=caption))
    return blocks


def _outcome_table(
    outcomes: list[Outcome], base: Outcome, has_self: bool, *, cumulative: bool
) -> Table:
    headers = ["lever", "setting", "API $/month", "API saving"]
    if has_self:
        headers += ["self-hosted $/month", "self-hosted saving", "GPUs", "break-even"]
    rows = []
    for outcome in outcomes:
        row = [
            outcome.lever,
            outcome.setting,
            usd(outcome.api_monthly_usd),
            _saving(base.api_monthly_usd, outcome.api_monthly_usd),
        ]
        if has_self:
            row += [
                usd(outcome.self_hosted_monthly_usd),
                _saving(base.self_hosted_monthly_usd, outcome.self_hosted_monthly_usd),
                "-" if outcome.num_gpus is None else str(outcome.num_gpus),
                tokens(outcome.break_even_monthly_tokens),
            ]
        rows.append(row)
    caption = (
        "Savings against today, each step on top of the ones above."
        if cumulative
        else "- the lever does not change that side."
    )
    if has_self:
        caption += (
            " Break-even is in tokens of the traffic after the levers, whose mix "
            "of prompt and output tokens they change."
        )
    return Table(headers, rows, caption=caption, first_numeric_column=2)


def _saving(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "-"
    saved = before - after
    percent = f" ({saved / before:.0%})" if before else ""
    return usd(saved, signed=True) + percent
