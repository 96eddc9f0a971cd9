"""Reading one value of a bill: numbers, times and CSV rows, with errors that say
which file, which row, which column, and what to do."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.breakeven.errors import BillError

_TRUE = {"true", "1", "yes", "batch"}
_FALSE = {"false", "0", "no", "", "standard", "none", "null"}


class Row:
    """One record of a bill, keyed by column; knows where it came from."""

    def __init__(self, values: Mapping[str, Any], where: str) -> None:
        self.values = values
        self.where = where

    def has(self, column: str) -> bool:
        return _is_present(self.values.get(column))

    def first_present(self, *columns: str) -> str | None:
        return next((c for c in columns if self.has(c)), None)

    def count(self, column: str, *, required: bool = True) -> int | None:
        """A token or request count: a non-negative whole number."""
        value = self.values.get(column)
        if not _is_present(value):
            if required:
                raise BillError(f"{self.where}: column {column!r} is missing or empty")
            return None
        try:
            number = float(str(value).replace(",", "").replace("_", ""))
        except ValueError:
            number = math.nan
        # Exports write counts as "3.0" now and then; anything else is not a count.
        if not math.isfinite(number) or number < 0 or number != int(number):
            raise BillError(
                f"{self.where}: column {column!r} is {value!r}, not a whole number "
                "of tokens or requests; fix or delete that cell"
            )
        return int(number)

    def dollars(self, column: str) -> float | None:
        value = self.values.get(column)
        if not _is_present(value):
            return None
        try:
            number = float(str(value).replace(",", "").removeprefix("$"))
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise BillError(
                f"{self.where}: column {column!r} is {value!r}, not an amount in "
                "US dollars such as 12.50; fix that cell or drop the column"
            )
        return number

    def text(self, column: str, *, required: bool = True) -> str | None:
        value = self.values.get(column)
        if not _is_present(value):
            if required:
                raise BillError(f"{self.where}: column {column!r} is missing or empty")
            return None
        return str(value).strip()

    def flag(self, column: str) -> bool:
        value = self.values.get(column)
        if isinstance(value, bool):
            return value
        text = "" if value is None else str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BillError(
            f"{self.where}: column {column!r} is {value!r}; write true or false"
        )

    def time(self, column: str) -> datetime:
        value = self.values.get(column)
        if not _is_present(value):
            raise BillError(f"{self.where}: column {column!r} is missing or empty")
        try:
            return parse_time(value)
        except ValueError:
            raise BillError(
                f"{self.where}: column {column!r} is {value!r}, not a time; use unix "
                "seconds or ISO 8601 (2026-11-01T00:00:00Z)"
            ) from None


def parse_time(value: Any) -> datetime:
    """Unix seconds, ISO 8601 / RFC 3339, or a bare date, as an aware UTC time."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value).strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_json(path: Path) -> Any:
    """One JSON document, or JSON Lines (one object per line) as a list."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            try:
                return [json.loads(line) for line in lines]
            except json.JSONDecodeError:
                pass
        raise BillError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); save the API's response body as it came"
        ) from None


def read_csv(
    path: Path, required: Sequence[Sequence[str]], fix: str
) -> tuple[list[str], Iterator[Row]]:
    """The header and rows of a CSV file, after checking `required` columns.

    Each entry of `required` lists alternative names; one of them must be there.
    """
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise BillError(f"{path}: the file is empty; {fix}")
    reader.fieldnames = header
    missing = [alts for alts in required if not any(a in header for a in alts)]
    if missing:
        names = ", ".join(" or ".join(repr(a) for a in alts) for alts in missing)
        raise BillError(
            f"{path}: missing column(s) {names}; the header has "
            f"{', '.join(header)}. {fix}"
        )

    def rows() -> Iterator[Row]:
        # Row 1 is the header, as a spreadsheet numbers it.
        for number, values in enumerate(reader, start=2):
            if None in values:
                raise BillError(
                    f"{path}: row {number} has more cells than the header has "
                    "columns; check for an unquoted comma"
                )
            yield Row(values, f"{path}: row {number}")

    return header, rows()


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BillError(
            f"{path}: no such file; check the path given to --bill"
        ) from None
    except UnicodeDecodeError:
        raise BillError(
            f"{path}: not a UTF-8 text file; export the bill as CSV or JSON"
        ) from None
    except OSError as exc:
        raise BillError(f"{path}: cannot read the bill ({exc.strerror})") from None


def _is_present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""
