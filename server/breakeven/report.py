"""What the break-even report says, as a document and as JSON."""

from __future__ import annotations

from typing import Any

from server.breakeven.answer import Answer
from server.breakeven.document import (
    Bullets,
    Document,
    Figure,
    Heading,
    Paragraph,
    Table,
)
from server.breakeven.formatting import gpus, months, share, tokens, usd
from server.breakeven.hosting import OwnedGpu
from server.breakeven.sensitivity import Sensitivity


def breakeven_document(
    answer: Answer, sensitivity: Sensitivity, plot_png: bytes | None
) -> Document:
    document = Document(f"Break-even: {answer.candidate} against the API")
    document.add(Paragraph(headline(answer), is_lead=True))
    document.add(
        Heading("The answer"), _answer_table(answer), _cost_parts_table(answer)
    )
    document.add(Bullets(_break_even_points(answer)))
    if plot_png is not None:
        document.add(
            Figure(
                plot_png,
                "Monthly cost against monthly volume: the API's line, self-hosting's "
                "steps as GPUs are added",
            )
        )
    document.add(Heading("Assumptions"), _assumptions_table(answer))
    document.add(Heading("Sensitivity"), _sensitivity_table(answer, sensitivity))
    document.add(Heading("The bill"), _bill_table(answer))
    if answer.warnings:
        document.add(Heading("Notes"), Bullets(answer.warnings))
    return document


def headline(answer: Answer) -> str:
    volume = f"At {tokens(answer.monthly_tokens)} tokens a month"
    api = f"{usd(answer.api_monthly_usd)}/month on the API"
    hosted = answer.self_hosted
    fleet = f"{gpus(hosted.num_gpus)} ({_kind(answer)} {answer.hardware.name})"
    cost = f"{usd(hosted.monthly_usd)}/month"
    savings = answer.savings_monthly_usd
    verdict = (
        f"self-hosting is cheaper by {usd(savings)}/month"
        if savings > 0
        else f"the API is cheaper by {usd(-savings)}/month"
    )
    text = f"{volume} ({api}), self-hosting on {fleet} costs {cost}: {verdict}."
    break_even = answer.break_even
    if break_even.monthly_tokens is None:
        text += (
            f" Self-hosting does not break even at any volume ({break_even.reason})."
        )
    else:
        text += (
            f" Self-hosting is cheaper from {tokens(break_even.monthly_tokens)} "
            "tokens a month on."
        )
    if isinstance(answer.hardware, OwnedGpu):
        text += " " + _payback_sentence(answer)
    return text


def breakeven_json(answer: Answer, sensitivity: Sensitivity) -> dict[str, Any]:
    data = _answer_json(answer)
    data["headline"] = headline(answer)
    data["sensitivity"] = {
        "api_monthly_usd": sensitivity.api_monthly_usd,
        "gpu_prices": sensitivity.price_labels,
        "rows": [
            {
                "overhead_factor": row.overhead_factor,
                "utilization": row.utilization,
                "utilization_high": row.utilization_high,
                "num_gpus": row.num_gpus,
                "savings_monthly_usd": row.savings_usd,
            }
            for row in sensitivity.rows
        ],
    }
    return data


def _answer_json(answer: Answer) -> dict[str, Any]:
    autoscaled = answer.self_hosted_autoscaled
    success_api, success_self = answer.success.api, answer.success.self_hosted
    return {
        "candidate": answer.candidate,
        "bill": {
            "source": answer.bill.source,
            "format": answer.bill.format,
            "num_months": answer.bill.num_months,
            "start": answer.bill.start.isoformat() if answer.bill.start else None,
            "end": answer.bill.end.isoformat() if answer.bill.end else None,
            "notes": answer.bill.notes,
        },
        "monthly_tokens": answer.monthly_tokens,
        "monthly_prompt_tokens": answer.monthly_prompt_tokens,
        "monthly_cached_tokens": answer.monthly_cached_tokens,
        "monthly_output_tokens": answer.monthly_output_tokens,
        "monthly_requests": answer.monthly_requests,
        "api": {
            "monthly_usd": answer.api_monthly_usd,
            "list_monthly_usd": answer.api.list_monthly_usd,
            "billed_monthly_usd": answer.api.billed_monthly_usd,
            "usd_per_mtok": answer.api_usd_per_mtok,
            "usd_per_request": answer.usd_per_request(answer.api_monthly_usd, None),
            "usd_per_successful_request": answer.usd_per_request(
                answer.api_monthly_usd, success_api
            )
            if success_api
            else None,
            "by_model": [vars(cost) for cost in answer.api.by_model],
            "notes": answer.api.notes,
        },
        "self_hosted": {
            "monthly_usd": answer.self_hosted.monthly_usd,
            "parts_usd": answer.self_hosted.parts_usd,
            "num_gpus_peak": answer.self_hosted.num_gpus,
            "num_gpus_average": autoscaled.num_gpus if autoscaled else None,
            "autoscaled_monthly_usd": autoscaled.monthly_usd if autoscaled else None,
            "busy_gpus_average": answer.busy_gpus_average,
            "busy_gpus_peak": answer.busy_gpus_peak,
            "utilization": answer.utilization,
            "usd_per_mtok": answer.self_hosted_usd_per_mtok,
            "usd_per_mtok_at_full_use": answer.self_hosted_usd_per_mtok_full,
            "usd_per_request": answer.usd_per_request(
                answer.self_hosted.monthly_usd, None
            ),
            "usd_per_successful_request": answer.usd_per_request(
                answer.self_hosted.monthly_usd, success_self
            )
            if success_self
            else None,
            "upfront_usd": answer.hardware.upfront_usd(answer.self_hosted.num_gpus),
            "payback_months": answer.payback_months,
        },
        "savings_monthly_usd": answer.savings_monthly_usd,
        "break_even_monthly_tokens": answer.break_even.monthly_tokens,
        "first_cheaper_monthly_tokens": answer.break_even.first_monthly_tokens,
        "break_even_note": answer.break_even.reason or None,
        "assumptions": [
            {"what": what, "value": value, "source": source}
            for what, value, source in answer.assumptions()
        ],
        "warnings": answer.warnings,
    }


def _answer_table(answer: Answer) -> Table:
    hosted = answer.self_hosted
    autoscaled = answer.self_hosted_autoscaled
    success_api, success_self = answer.success.api, answer.success.self_hosted
    rows = [
        ["monthly cost", usd(answer.api_monthly_usd), usd(hosted.monthly_usd)],
        [
            "per million tokens",
            usd(answer.api_usd_per_mtok),
            usd(answer.self_hosted_usd_per_mtok),
        ],
        [
            "per request",
            usd(answer.usd_per_request(answer.api_monthly_usd, None)),
            usd(answer.usd_per_request(hosted.monthly_usd, None)),
        ],
        [
            "per successful request",
            usd(answer.usd_per_request(answer.api_monthly_usd, success_api))
            if success_api
            else "-",
            usd(answer.usd_per_request(hosted.monthly_usd, success_self))
            if success_self
            else "-",
        ],
        [
            "GPUs (for the busiest hour)",
            "",
            f"{hosted.num_gpus} ({answer.busy_gpus_peak:.2f} busy)",
        ],
        ["fleet utilization (average)", "", share(answer.utilization)],
    ]
    if autoscaled is not None and autoscaled.num_gpus != hosted.num_gpus:
        rows.append(
            [
                "floor: perfect autoscaling",
                "",
                f"{usd(autoscaled.monthly_usd)} on {gpus(autoscaled.num_gpus)}",
            ]
        )
    return Table(
        ["", "API", "self-hosted"], rows, caption="- unknown or not applicable"
    )


def _cost_parts_table(answer: Answer) -> Table:
    parts = answer.self_hosted.parts_usd
    rows = [[part, usd(value)] for part, value in parts.items()]
    rows.append(["total", usd(answer.self_hosted.monthly_usd)])
    return Table(["self-hosted, per month", "cost"], rows)


def _break_even_points(answer: Answer) -> list[str]:
    break_even = answer.break_even
    points = []
    volume = break_even.monthly_tokens
    if volume is None:
        points.append(f"Break-even volume: none ({break_even.reason}).")
    else:
        points.append(
            f"Break-even volume: {tokens(volume)} tokens a month "
            f"({volume / answer.monthly_tokens:.1f}x the bill); from there on "
            "self-hosting stays cheaper."
        )
    if break_even.first_monthly_tokens is not None:
        points.append(
            f"It is already cheaper at {tokens(break_even.first_monthly_tokens)} "
            "tokens, until the next GPU is added."
        )
    points.append(
        f"Self-hosted cost per million tokens on full GPUs (at the headroom, "
        f"overhead spread out): {usd(answer.self_hosted_usd_per_mtok_full)}; the "
        f"API's: {usd(answer.api_usd_per_mtok)}."
    )
    if isinstance(answer.hardware, OwnedGpu):
        points.append(_payback_sentence(answer))
    return points


def _payback_sentence(answer: Answer) -> str:
    upfront = answer.hardware.upfront_usd(answer.self_hosted.num_gpus)
    payback = answer.payback_months
    lifetime = getattr(answer.hardware, "lifetime_months", None)
    if payback is None:
        return (
            f"The purchase ({usd(upfront)}) never pays back: power, hosting and "
            "operations alone cost more than the API bill."
        )
    sentence = f"The purchase ({usd(upfront)}) pays back in {months(payback)}"
    if lifetime is not None and payback > lifetime:
        return sentence + f", longer than the GPUs' {lifetime:g}-month life."
    return sentence + "."


def _assumptions_table(answer: Answer) -> Table:
    return Table(
        ["what", "value", "from"],
        [list(row) for row in answer.assumptions()],
        first_numeric_column=99,
    )


def _sensitivity_table(answer: Answer, result: Sensitivity) -> Table:
    rows = [
        [
            _overhead_label(answer, row.overhead_factor),
            share(row.utilization)
            if row.utilization == row.utilization_high
            else f"{share(row.utilization)}-{share(row.utilization_high)}",
            str(row.num_gpus),
            *(usd(value, signed=True) for value in row.savings_usd),
        ]
        for row in result.rows
    ]
    return Table(
        ["overhead", "utilization", "GPUs", *result.price_labels],
        rows,
        caption=(
            f"Monthly savings of self-hosting against the API's "
            f"{usd(result.api_monthly_usd)} at the bill's volume; negative: the API "
            "is cheaper. GPUs are sized so the average load fills them to the "
            "utilization shown (a range: the same fleet for all of them)."
        ),
        first_numeric_column=1,
    )


def _overhead_label(answer: Answer, factor: float) -> str:
    ops = answer.ops.scaled(factor)
    if ops.multiplier is not None:
        return f"x{factor:g} ({ops.multiplier:.0%} of hardware)"
    return f"x{factor:g} ({usd(ops.fixed_usd_per_month)})"


def _bill_table(answer: Answer) -> Table:
    rows = [
        [
            cost.model,
            cost.price_key,
            tokens(cost.num_prompt_tokens),
            tokens(cost.num_cached_tokens),
            tokens(cost.num_output_tokens),
            usd(cost.list_cost_usd),
        ]
        for cost in answer.api.by_model
    ]
    caption = (
        f"Per month ({answer.bill.num_months:.2f} months in the bill), list prices."
    )
    if answer.api.billed_monthly_usd is not None:
        caption += f" The bill itself says {usd(answer.api.billed_monthly_usd)}/month."
    return Table(
        ["model", "priced as", "prompt", "cached", "output", "API cost"],
        rows,
        caption=caption,
        first_numeric_column=2,
    )


def _kind(answer: Answer) -> str:
    return "owned" if isinstance(answer.hardware, OwnedGpu) else "rented"
