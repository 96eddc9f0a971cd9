"""OpenAI's organization Usage API for completions, and the dashboard's export.

Looked up (December 2026, stored copies of public pages; not checked against a
live account):
- API: `GET /v1/organization/usage/completions` answers a page
  `{"object": "page", "data": [bucket…], "has_more", "next_page"}`; each bucket is
  `{"object": "bucket", "start_time", "end_time" (unix seconds), "results": […]}`
  and each result `organization.usage.completions.result` has `input_tokens`
  (all input, *including* cached tokens), `input_cached_tokens`, `output_tokens`,
  `num_model_requests`, and `model` / `batch` / `project_id` / … which are null
  unless the request grouped by them (`group_by=model`, `group_by=batch`).
  Sources: OpenAI's OpenAPI spec as generated into docs.rs `openai-client-base`
  (UsageCompletionsResult), the apidog mirror of the API reference, and OpenAI's
  cookbook "How to use the Usage API and Cost API".
- Newer API versions add `input_uncached_tokens` and `input_cache_write_tokens`
  (seen in public client code, not in OpenAI's own page). OpenAI charges no
  cache-write premium, so written tokens are priced as plain input here.
- Dashboard export (platform.openai.com/usage, "Export"): `completions_usage_
  <from>_<to>.csv`, one row per bucket and group, with `start_time`, `end_time`,
  `start_time_iso`, `end_time_iso` and the result fields above as columns; empty
  buckets fill only the four time columns, and counts may be written as "3.0".
  This comes from public projects that parse such files; the full column list
  and its order could not be verified, so the reader goes by column names only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from server.breakeven.bills.fields import Row, read_csv, read_json
from server.breakeven.errors import BillError
from server.breakeven.usage import Bill, UsageLine

FORMAT_API = "openai-usage-api"
FORMAT_EXPORT = "openai-usage-export"
_RESULT_OBJECT = "organization.usage.completions.result"
_FIX_GROUPING = (
    "fetch the usage with group_by=model (and group_by=batch to split batch "
    "traffic), e.g. /v1/organization/usage/completions?group_by=model&group_by=batch"
)


def looks_like_api(document: Any) -> bool:
    pages = document if isinstance(document, list) else [document]
    return any(
        isinstance(page, dict)
        and (page.get("object") == "page" or _has_result_object(page))
        and any(
            "start_time" in b for b in page.get("data") or [] if isinstance(b, dict)
        )
        for page in pages
    )


def looks_like_export(header: list[str]) -> bool:
    return "start_time" in header and (
        "input_cached_tokens" in header or "num_model_requests" in header
    )


def read_api(path: Path, document: Any | None = None) -> Bill:
    """A Usage API response (one page, a list of pages, or JSON Lines of pages)."""
    document = read_json(path) if document is None else document
    pages = document if isinstance(document, list) else [document]
    buckets: list[tuple[Row, list[Row]]] = []
    for page_index, page in enumerate(pages):
        prefix = f"{path}: page {page_index + 1}, " if len(pages) > 1 else f"{path}: "
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise BillError(
                f"{prefix.rstrip(', ')}: no 'data' list of buckets; save the whole "
                "response body of /v1/organization/usage/completions"
            )
        for index, bucket in enumerate(page["data"]):
            where = f"{prefix}data[{index}]"
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                raise BillError(f"{where}: a bucket without a 'results' list")
            rows = [Row(r, f"{where}.results[{i}]") for i, r in enumerate(results)]
            buckets.append((Row(bucket, where), rows))
    return _bill(path, FORMAT_API, buckets, _page_notes(pages))


def read_export(path: Path) -> Bill:
    """The dashboard's `completions_usage_*.csv`: one bucket and group per row."""
    _, rows = read_csv(
        path,
        required=[["start_time"], ["end_time"], ["input_tokens"], ["output_tokens"]],
        fix="Export the Activity view of platform.openai.com/usage by model.",
    )
    return _bill(path, FORMAT_EXPORT, ((row, [row]) for row in rows), [])


def _bill(
    path: Path,
    format_name: str,
    buckets: Iterable[tuple[Row, list[Row]]],
    notes: list[str],
) -> Bill:
    lines: list[UsageLine] = []
    starts, ends = [], []
    num_empty = 0
    is_batch_known = True
    num_audio_tokens = 0
    for bucket, results in buckets:
        start, end = bucket.time("start_time"), bucket.time("end_time")
        starts.append(start)
        ends.append(end)
        for result in _with_usage(results):
            if result is None:
                num_empty += 1
                continue
            if not result.has("model"):
                raise BillError(
                    f"{result.where}: no model in this result; {_FIX_GROUPING}"
                )
            is_batch_known &= result.has("batch")
            num_audio_tokens += result.count("input_audio_tokens", required=False) or 0
            lines.append(_line(result, start, end))
    if not starts:
        raise BillError(f"{path}: no time buckets; is this a usage export?")
    if not is_batch_known:
        notes.append(
            "not grouped by batch: all tokens are priced as synchronous requests "
            "(fetch with group_by=batch to price batch traffic at its discount)"
        )
    if num_audio_tokens:
        notes.append(
            f"{num_audio_tokens:,} audio input tokens are priced as text tokens; "
            "audio has its own prices"
        )
    if num_empty and format_name == FORMAT_EXPORT:
        notes.append(f"{num_empty} rows without usage (empty time buckets) skipped")
    start, end = min(starts), max(ends)
    return Bill.spanning(str(path), format_name, lines, start, end, notes)


def _with_usage(results: list[Row]) -> Iterator[Row | None]:
    for result in results:
        has_usage = any(
            result.has(c) for c in ("input_tokens", "output_tokens", "model")
        )
        yield result if has_usage else None


def _line(result: Row, start: Any, end: Any) -> UsageLine:
    num_prompt = result.count("input_tokens")
    num_cached = result.count("input_cached_tokens", required=False) or 0
    if num_prompt is not None and num_cached > num_prompt:
        raise BillError(
            f"{result.where}: input_cached_tokens {num_cached} exceeds input_tokens "
            f"{num_prompt}; OpenAI counts cached tokens inside input_tokens, so this "
            "row is not an OpenAI usage result"
        )
    return UsageLine(
        model=result.text("model") or "",
        num_prompt_tokens=num_prompt or 0,
        num_cached_tokens=num_cached,
        num_output_tokens=result.count("output_tokens") or 0,
        num_requests=result.count("num_model_requests", required=False),
        is_batch=result.flag("batch"),
        start=start,
        end=end,
    )


def _page_notes(pages: list[Any]) -> list[str]:
    if not pages or not pages[-1].get("has_more"):
        return []
    return [
        "the last page says has_more: true, so later buckets are missing; fetch "
        "them with page=<next_page> and pass all pages as one JSON list"
    ]


def _has_result_object(page: dict[str, Any]) -> bool:
    for bucket in page.get("data") or []:
        for result in (bucket or {}).get("results") or []:
            if isinstance(result, dict) and result.get("object") == _RESULT_OBJECT:
                return True
    return False
