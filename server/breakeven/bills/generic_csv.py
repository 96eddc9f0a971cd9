"""A bill any team can write by hand or export from a spreadsheet.

Columns (a header row is required, order is free, names are exact):

| column | required | meaning |
| --- | --- | --- |
| `month` (YYYY-MM) or `date` (YYYY-MM-DD) | yes | the period of the row |
| `model` | yes | the API model, e.g. gpt-4o-mini or openai/gpt-4o-mini |
| `input_tokens` | yes | all prompt tokens, *including* the cached ones |
| `cached_input_tokens` | yes | prompt tokens read from the provider's cache |
| `output_tokens` | yes | completion tokens |
| `cost_usd` | no | what the provider billed for the row |
| `requests` | no | number of requests |
| `successful_requests` | no | requests whose answer was good enough |
| `batch` | no | true for traffic sent through the batch API |
| `cache_write_tokens` | no | prompt tokens written to a cache (Anthropic, 5 min) |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.breakeven.bills.fields import Row, read_csv
from server.breakeven.errors import BillError
from server.breakeven.usage import Bill, UsageLine, months_between

FORMAT = "generic-csv"
REQUIRED = [
    ("month", "date"),
    ("model",),
    ("input_tokens",),
    ("cached_input_tokens",),
    ("output_tokens",),
]


def looks_like(header: list[str]) -> bool:
    # Lenient on purpose: once it looks generic, the reader names what is missing.
    return ("month" in header or "date" in header) and "model" in header


def read(path: Path) -> Bill:
    _, rows = read_csv(
        path,
        required=REQUIRED,
        fix=(
            "A generic bill needs month (or date), model, input_tokens, "
            "cached_input_tokens and output_tokens; see `tokenmill report breakeven "
            "--help` or server/breakeven/samples/generic_bill.csv"
        ),
    )
    lines = [_line(row) for row in rows]
    if not lines:
        raise BillError(f"{path}: the header is there but no rows follow it")
    kinds = {_is_month(line) for line in lines}
    if len(kinds) > 1:
        raise BillError(
            f"{path}: rows mix 'month' and 'date' periods; use one kind per file"
        )
    start = min(line.start for line in lines if line.start)
    end = max(line.end for line in lines if line.end)
    # A file of months covers whole calendar months, however many days they have.
    if True in kinds:
        num_months: float = len({line.start for line in lines})
    else:
        num_months = months_between(start, end)
    notes = []
    if any(line.num_requests is None for line in lines):
        notes.append("no 'requests' column: cost per request unknown")
    if all(line.billed_cost_usd is not None for line in lines):
        notes.append("the bill's own cost_usd is used as the API cost")
    return Bill(str(path), FORMAT, lines, num_months, start, end, notes)


def _line(row: Row) -> UsageLine:
    start, end = _period(row)
    num_prompt = row.count("input_tokens") or 0
    num_cached = row.count("cached_input_tokens") or 0
    num_writes = row.count("cache_write_tokens", required=False) or 0
    if num_cached + num_writes > num_prompt:
        raise BillError(
            f"{row.where}: cached_input_tokens ({num_cached}) plus cache_write_tokens "
            f"({num_writes}) exceed input_tokens ({num_prompt}); input_tokens must "
            "count all prompt tokens, cached ones included. If yours counts only the "
            "uncached ones, write their sum with the cached ones instead"
        )
    num_requests = row.count("requests", required=False)
    num_successful = row.count("successful_requests", required=False)
    if num_successful is not None and (num_requests or 0) < num_successful:
        raise BillError(
            f"{row.where}: successful_requests ({num_successful}) exceeds requests "
            f"({num_requests}); give both, with successes a part of requests"
        )
    return UsageLine(
        model=row.text("model") or "",
        num_prompt_tokens=num_prompt,
        num_cached_tokens=num_cached,
        num_cache_write_tokens=num_writes,
        num_output_tokens=row.count("output_tokens") or 0,
        num_requests=num_requests,
        num_successful=num_successful,
        is_batch=row.flag("batch") if row.has("batch") else False,
        billed_cost_usd=row.dollars("cost_usd"),
        start=start,
        end=end,
    )


def _period(row: Row) -> tuple[datetime, datetime]:
    if row.has("month"):
        text = row.text("month") or ""
        try:
            start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise BillError(
                f"{row.where}: column 'month' is {text!r}; write it as YYYY-MM, "
                "e.g. 2026-11"
            ) from None
        next_month = (start + timedelta(days=32)).replace(day=1)
        return start, next_month
    start = row.time("date")
    return start, start + timedelta(days=1)


def _is_month(line: UsageLine) -> bool:
    return (
        line.start is not None
        and line.end is not None
        and line.end - line.start > timedelta(days=1)
    )
