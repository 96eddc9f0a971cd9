"""Anthropic's Messages usage report (Admin API) and the Console's usage export.

Looked up (December 2026, stored copies of public pages; not checked against a
live account):
- API: `GET /v1/organizations/usage_report/messages` (platform.claude.com, "Get
  Messages Usage Report") answers `{"data": [bucket…], "has_more", "next_page"}`;
  each bucket is `{"starting_at", "ending_at" (RFC 3339), "results": […]}` and each
  result has `uncached_input_tokens`, `cache_read_input_tokens`,
  `cache_creation: {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}`,
  `output_tokens`, `server_tool_use`, and `model`, `service_tier` (standard,
  batch, priority), `context_window` (0-200k, 200k-1M), `workspace_id`,
  `api_key_id` — null unless grouped by them (`group_by[]=model`). Input is split
  by cache behaviour; the total input is the sum of the four parts. The report
  has no request counts. Some derived schemas flatten the cache writes to
  `cache_creation_5m_input_tokens` / `cache_creation_1h_input_tokens`; both
  spellings are read.
- Console export (console.anthropic.com, Usage, "Export"): a CSV with
  `usage_date_utc, model_version, api_key, workspace, usage_type,
  context_window, usage_input_tokens_no_cache, usage_input_tokens_cache_write_5m,
  usage_input_tokens_cache_write_1h, usage_input_tokens_cache_read,
  usage_output_tokens, web_search_count, inference_geo, speed`. Anthropic does not
  document this file; the columns are the ones several public projects that parse
  it agree on. `usage_type` was seen as "standard"; that batch rows say "batch"
  is an assumption.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from server.breakeven.bills.fields import Row, read_csv, read_json
from server.breakeven.errors import BillError
from server.breakeven.usage import Bill, UsageLine

FORMAT_API = "anthropic-usage-report"
FORMAT_EXPORT = "anthropic-console-export"
_FIX_GROUPING = (
    "fetch the report with group_by[]=model (and group_by[]=service_tier to price "
    "batch traffic at its discount)"
)

# (field in the API's result, column in the Console export)
_UNCACHED = ("uncached_input_tokens", "usage_input_tokens_no_cache")
_CACHE_READ = ("cache_read_input_tokens", "usage_input_tokens_cache_read")
_WRITE_5M = ("cache_creation_5m_input_tokens", "usage_input_tokens_cache_write_5m")
_WRITE_1H = ("cache_creation_1h_input_tokens", "usage_input_tokens_cache_write_1h")
_OUTPUT = ("output_tokens", "usage_output_tokens")
_MODEL = ("model", "model_version")
_TIER = ("service_tier", "usage_type")


def looks_like_api(document: Any) -> bool:
    pages = document if isinstance(document, list) else [document]
    return any(
        isinstance(page, dict)
        and any(
            isinstance(b, dict) and "starting_at" in b for b in page.get("data") or []
        )
        for page in pages
    )


def looks_like_export(header: list[str]) -> bool:
    return "usage_input_tokens_no_cache" in header or "uncached_input_tokens" in header


def read_api(path: Path, document: Any | None = None) -> Bill:
    """A usage report response (one page, a list of pages, or JSON Lines)."""
    document = read_json(path) if document is None else document
    pages = document if isinstance(document, list) else [document]
    lines: list[UsageLine] = []
    starts, ends = [], []
    reader = _Reader()
    for page_index, page in enumerate(pages):
        prefix = f"{path}: page {page_index + 1}, " if len(pages) > 1 else f"{path}: "
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise BillError(
                f"{prefix.rstrip(', ')}: no 'data' list of buckets; save the whole "
                "response body of /v1/organizations/usage_report/messages"
            )
        for index, bucket in enumerate(page["data"]):
            where = f"{prefix}data[{index}]"
            row = Row(bucket if isinstance(bucket, dict) else {}, where)
            start, end = row.time("starting_at"), row.time("ending_at")
            starts.append(start)
            ends.append(end)
            results = bucket.get("results")
            if not isinstance(results, list):
                raise BillError(f"{where}: a bucket without a 'results' list")
            for i, result in enumerate(results):
                flat = _flatten(result)
                lines.append(
                    reader.line(Row(flat, f"{where}.results[{i}]"), start, end)
                )
    notes = reader.notes()
    if pages and isinstance(pages[-1], dict) and pages[-1].get("has_more"):
        notes.append(
            "the last page says has_more: true, so later buckets are missing; fetch "
            "them with page=<next_page> and pass all pages as one JSON list"
        )
    return _bill(path, FORMAT_API, lines, starts, ends, notes)


def read_export(path: Path) -> Bill:
    """The Console's usage CSV: one row per day, model, key and usage type."""
    _, rows = read_csv(
        path,
        required=[_UNCACHED, _OUTPUT, _MODEL, ("usage_date_utc", "starting_at")],
        fix="Export the Usage page of console.anthropic.com as CSV.",
    )
    lines: list[UsageLine] = []
    starts, ends = [], []
    reader = _Reader()
    for row in rows:
        if row.has("usage_date_utc"):
            start = row.time("usage_date_utc")
            end = start + timedelta(days=1)
        else:
            start, end = row.time("starting_at"), row.time("ending_at")
        starts.append(start)
        ends.append(end)
        lines.append(reader.line(row, start, end))
    notes = reader.notes()
    if lines:
        notes.append(
            "the period runs from the first to the last day in the file; pass "
            "--months if the bill's month had days without traffic at either end"
        )
    return _bill(path, FORMAT_EXPORT, lines, starts, ends, notes)


class _Reader:
    """Turns rows into lines, and remembers what it had to assume."""

    def __init__(self) -> None:
        self.tiers: dict[str, int] = {}
        self.num_long_context = 0
        self.is_tier_known = True

    def line(self, row: Row, start: datetime, end: datetime) -> UsageLine:
        model_column = row.first_present(*_MODEL)
        if model_column is None:
            raise BillError(f"{row.where}: no model in this row; {_FIX_GROUPING}")
        tier_column = row.first_present(*_TIER)
        tier = (row.text(tier_column) or "").lower() if tier_column else ""
        self.is_tier_known &= bool(tier)
        self.tiers[tier] = self.tiers.get(tier, 0) + 1
        if str(row.values.get("context_window") or "").startswith("200k"):
            self.num_long_context += 1
        num_uncached = _count(row, _UNCACHED, required=True)
        num_read = _count(row, _CACHE_READ)
        num_write_5m = _count(row, _WRITE_5M)
        num_write_1h = _count(row, _WRITE_1H)
        return UsageLine(
            model=row.text(model_column) or "",
            num_prompt_tokens=num_uncached + num_read + num_write_5m + num_write_1h,
            num_cached_tokens=num_read,
            num_cache_write_tokens=num_write_5m,
            num_cache_write_1h_tokens=num_write_1h,
            num_output_tokens=_count(row, _OUTPUT, required=True),
            is_batch=tier == "batch",
            start=start,
            end=end,
        )

    def notes(self) -> list[str]:
        notes = ["Anthropic's report has no request counts: cost per request unknown"]
        if not self.is_tier_known:
            notes.append(
                "not grouped by service tier: all tokens are priced as standard "
                "(non-batch) requests"
            )
        if other := sorted(t for t in self.tiers if t not in ("", "standard", "batch")):
            notes.append(f"service tier(s) {', '.join(other)} priced at standard rates")
        if self.num_long_context:
            notes.append(
                f"{self.num_long_context} rows used the 200k-1M context window, "
                "which Anthropic prices higher; they are priced at the standard rate "
                "here, so the API cost is understated"
            )
        return notes


def _count(row: Row, columns: tuple[str, str], *, required: bool = False) -> int:
    column = row.first_present(*columns) or columns[0]
    return row.count(column, required=required) or 0


def _flatten(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    flat = dict(result)
    creation = result.get("cache_creation")
    if isinstance(creation, dict):
        flat.setdefault(_WRITE_5M[0], creation.get("ephemeral_5m_input_tokens"))
        flat.setdefault(_WRITE_1H[0], creation.get("ephemeral_1h_input_tokens"))
    return flat


def _bill(
    path: Path,
    format_name: str,
    lines: list[UsageLine],
    starts: list[datetime],
    ends: list[datetime],
    notes: list[str],
) -> Bill:
    if not starts:
        raise BillError(f"{path}: no time buckets; is this a usage report?")
    start, end = min(starts), max(ends)
    return Bill.spanning(str(path), format_name, lines, start, end, notes)
