"""tokenmill's own ledger as a bill: the traffic it served, by model and hour.

Every row counts, failed and aborted ones included, with the tokens the engine
really spent. Success is read from client feedback where there is any (the share
of feedback that says "success", taken as the rate for all requests), else from
the status (everything but errors).
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.breakeven.errors import BillError
from server.breakeven.usage import Bill, UsageLine

FORMAT = "tokenmill-ledger"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_database_url(text: str) -> bool:
    return text.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:"))


def is_sqlite_file(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def ledger_url(source: str) -> str:
    """A database URL from a URL or the path of a SQLite ledger file."""
    if is_database_url(source):
        if source.startswith("sqlite:"):
            _check_exists(Path(source.split("///", 1)[-1]), source)
        return source
    path = Path(source)
    _check_exists(path, source)
    return f"sqlite:///{path.resolve()}"


def read(url: str, start_s: float | None = None, end_s: float | None = None) -> Bill:
    """The ledger's requests started in [start_s, end_s), summed by model and hour."""
    import asyncio  # only here: the CLI starts faster without it

    rows = asyncio.run(_fetch(url, start_s, end_s))
    source = _safe(url)
    if not rows:
        raise BillError(
            f"{source}: no requests in the ledger for this window; widen --since "
            "or check --ledger-url"
        )
    lines = _hourly_lines(rows)
    first = datetime.fromtimestamp(rows[0]["started_at"], UTC)
    last = datetime.fromtimestamp(
        max(r["started_at"] + (r["duration_s"] or 0.0) for r in rows), UTC
    )
    # The window, narrowed to where traffic was: a ledger younger than --since
    # must not spread its volume over days it did not exist.
    start = max(first, _utc(start_s) or first).replace(
        minute=0, second=0, microsecond=0
    )
    end = min(_utc(end_s) or datetime.fromtimestamp(time.time(), UTC), last)
    end = max(end, start + timedelta(hours=1))
    notes = [
        f"ledger requests from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
        "the API price of each model is its api_reference in models.yaml unless "
        "--model-map says otherwise"
    ]
    success_rate, basis = _success_rate(rows)
    notes.append(f"success rate {success_rate:.1%} ({basis})")
    return Bill.spanning(
        source, FORMAT, lines, start, end, notes, measured_success_rate=success_rate
    )


async def _fetch(
    url: str, start_s: float | None, end_s: float | None
) -> list[dict[str, Any]]:
    from server.ledger import Ledger, LedgerError

    try:
        ledger = Ledger.open(url)
    except LedgerError as exc:
        raise BillError(str(exc)) from None
    try:
        return await ledger.fetch_requests(start_s, end_s)
    finally:
        await ledger.close()


def _hourly_lines(rows: list[dict[str, Any]]) -> list[UsageLine]:
    sums: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        hour = datetime.fromtimestamp(row["started_at"], UTC).replace(
            minute=0, second=0, microsecond=0
        )
        totals = sums[(row["model"], hour)]
        totals[0] += row["num_prompt_tokens"] or 0
        totals[1] += row["num_cached_tokens"] or 0
        totals[2] += row["num_completion_tokens"] or 0
        totals[3] += 1
    return [
        UsageLine(
            model=model,
            num_prompt_tokens=prompt,
            num_cached_tokens=min(cached, prompt),
            num_output_tokens=output,
            num_requests=num_requests,
            start=hour,
            end=hour + timedelta(hours=1),
        )
        for (model, hour), (prompt, cached, output, num_requests) in sorted(
            sums.items()
        )
    ]


def _success_rate(rows: list[dict[str, Any]]) -> tuple[float, str]:
    feedback = [row["feedback"] for row in rows if row.get("feedback") is not None]
    if feedback:
        rate = sum(f == "success" for f in feedback) / len(feedback)
        return rate, f"client feedback on {len(feedback)} of {len(rows)} requests"
    num_ok = sum(row["status"] != "error" for row in rows)
    return num_ok / len(rows), "no feedback: every request that did not fail"


def _check_exists(path: Path, source: str) -> None:
    # Opening a missing SQLite file would create an empty ledger and report nothing.
    if not path.exists():
        raise BillError(
            f"{source}: no ledger there; give the path of ledger.sqlite3 (under "
            "$TOKENMILL_HOME), a database URL, or --bill ledger for the configured one"
        )


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _safe(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url
