"""Bill import: one module per format, and `read_bill`, which picks the format.

| format | what | module |
| --- | --- | --- |
| `openai-usage-api` | /v1/organization/usage/completions JSON | openai_usage |
| `openai-usage-export` | platform.openai.com usage export CSV | openai_usage |
| `anthropic-usage-report` | /v1/organizations/usage_report/messages | anthropic_usage |
| `anthropic-console-export` | console.anthropic.com usage CSV | anthropic_usage |
| `generic-csv` | month, model, input/cached/output tokens | generic_csv |
| `tokenmill-ledger` | the ledger, by URL or SQLite file | ledger |
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from server.breakeven.bills import anthropic_usage, generic_csv, ledger, openai_usage
from server.breakeven.bills.fields import read_csv, read_json, read_text
from server.breakeven.defaults import BILL_FORMATS
from server.breakeven.errors import BillError
from server.breakeven.usage import Bill

__all__ = ["read_bill"]
_HELP = (
    "supported: OpenAI's usage API JSON or dashboard CSV, Anthropic's usage report "
    "JSON or Console CSV, a generic CSV (month, model, input_tokens, "
    "cached_input_tokens, output_tokens), or the ledger (--bill ledger)"
)


def read_bill(
    source: str,
    bill_format: str = "auto",
    *,
    months: float | None = None,
    default_ledger_url: str | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Bill:
    """The bill at `source`: a file, `ledger`, or a ledger database URL.

    `months` overrides the period the bill covers; `start_s`/`end_s` select the
    ledger's window.
    """
    bill = _read(source, bill_format, default_ledger_url, start_s, end_s)
    if months is None:
        return bill
    if months <= 0:
        raise BillError(f"--months {months} must be above 0, e.g. 1 for one month")
    note = f"period set by hand to {months:g} months (--months)"
    return dataclasses.replace(bill, num_months=months, notes=[*bill.notes, note])


def _read(
    source: str,
    bill_format: str,
    default_ledger_url: str | None,
    start_s: float | None,
    end_s: float | None,
) -> Bill:
    if bill_format not in BILL_FORMATS:
        raise BillError(
            f"--bill-format {bill_format!r}: use one of {', '.join(BILL_FORMATS)}"
        )
    if source == "ledger" or bill_format == "ledger":
        if source != "ledger":
            return ledger.read(ledger.ledger_url(source), start_s, end_s)
        if default_ledger_url is None:
            raise BillError("--bill ledger needs a ledger; set --ledger-url")
        return ledger.read(ledger.ledger_url(default_ledger_url), start_s, end_s)
    if ledger.is_database_url(source) or ledger.is_sqlite_file(Path(source)):
        return ledger.read(ledger.ledger_url(source), start_s, end_s)

    path = Path(source)
    if read_text(path).lstrip("\ufeff \n\r\t")[:1] in ("{", "["):
        return _read_json(path, bill_format)
    return _read_csv(path, bill_format)


def _read_json(path: Path, bill_format: str) -> Bill:
    document = read_json(path)
    if bill_format == "openai" or (
        bill_format == "auto" and openai_usage.looks_like_api(document)
    ):
        return openai_usage.read_api(path, document)
    if bill_format == "anthropic" or (
        bill_format == "auto" and anthropic_usage.looks_like_api(document)
    ):
        return anthropic_usage.read_api(path, document)
    raise BillError(
        f"{path}: JSON, but not a usage report tokenmill knows (no data[] buckets "
        f"with start_time or starting_at); {_HELP}"
    )


def _read_csv(path: Path, bill_format: str) -> Bill:
    # Once the format is given, its reader names exactly which columns are missing.
    if bill_format == "openai":
        return openai_usage.read_export(path)
    if bill_format == "anthropic":
        return anthropic_usage.read_export(path)
    if bill_format == "csv":
        return generic_csv.read(path)
    header, _ = read_csv(path, required=[], fix=_HELP)
    if openai_usage.looks_like_export(header):
        return openai_usage.read_export(path)
    if anthropic_usage.looks_like_export(header):
        return anthropic_usage.read_export(path)
    if generic_csv.looks_like(header):
        return generic_csv.read(path)
    raise BillError(
        f"{path}: cannot tell which bill this is from its columns "
        f"({', '.join(header) or 'none'}); {_HELP}. Pass --bill-format to say which"
    )
