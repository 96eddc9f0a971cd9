"""The `tokenmill bench` run history, read-only, for the break-even reports.

`bench/history.py` keeps every run in `$TOKENMILL_HOME/bench.sqlite3`: a table
`runs` with the columns id, created_at, kind ('run', 'calibrate', 'compare'),
git_revision, hardware, engine_version, tokenmill_version, model, url,
config_json and result_json. `server/` never imports `bench/` (the gateway must
not depend on the benchmark tool), so this module reads those documented columns
with its own query; the tests write a history with `bench.history.History`, which
pins this reader to the writer's schema.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.breakeven.errors import BreakEvenError

# bench.history.HISTORY_FILENAME, repeated here because server/ cannot import it.
HISTORY_FILENAME = "bench.sqlite3"


@dataclass(frozen=True)
class HistoryRun:
    """One stored run: where it came from, and its result as `bench` wrote it."""

    path: Path
    id: int
    created_at: str
    kind: str
    git_revision: str | None
    hardware: str | None
    model: str | None
    result: dict[str, Any]

    def describe(self) -> str:
        """Which run this is, for a report's source line."""
        return (
            f"bench history {self.path}: {self.kind} {self.id} of {self.model} on "
            f"{self.created_at} (git {self.git_revision or 'unknown'}, hardware "
            f"{self.hardware or 'unnamed'})"
        )


def default_path(home: Path) -> Path:
    """Where `tokenmill bench` stores its history by default."""
    return home / HISTORY_FILENAME


def latest_run(
    path: Path, kind: str, model: str, hardware: str | None = None
) -> HistoryRun:
    """The newest run of `kind` for `model` (and `hardware`); an error that says
    what the history holds instead when there is none."""
    if not path.is_file():
        raise BreakEvenError(
            f"{path}: no bench history there; run `tokenmill bench {kind}` first (it "
            "stores its runs in $TOKENMILL_HOME/bench.sqlite3), or give the path of "
            "the history to read"
        )
    query = "SELECT * FROM runs WHERE kind = ? AND model = ?"
    params = [kind, model]
    if hardware is not None:
        query += " AND hardware = ?"
        params.append(hardware)
    # Ids grow with each stored run, so the highest is the newest, as `bench
    # history` lists them.
    rows = _query(path, query + " ORDER BY id DESC LIMIT 1", params)
    if not rows:
        raise BreakEvenError(_no_run_message(path, kind, model, hardware))
    row = rows[0]
    try:
        result = json.loads(row["result_json"])
    except json.JSONDecodeError as exc:
        raise BreakEvenError(
            f"{path}: run {row['id']} has a result that is not JSON ({exc.msg}); "
            "rerun the benchmark"
        ) from None
    if not isinstance(result, dict):
        raise BreakEvenError(f"{path}: run {row['id']} has no result object")
    return HistoryRun(
        path=path,
        id=row["id"],
        created_at=row["created_at"],
        kind=row["kind"],
        git_revision=row["git_revision"],
        hardware=row["hardware"],
        model=row["model"],
        result=result,
    )


def _no_run_message(path: Path, kind: str, model: str, hardware: str | None) -> str:
    on_hardware = f" on hardware {hardware!r}" if hardware is not None else ""
    message = f"{path}: no `bench {kind}` of model {model!r}{on_hardware}"
    if hardware is not None:
        rows = _query(
            path,
            "SELECT DISTINCT hardware FROM runs WHERE kind = ? AND model = ?",
            [kind, model],
        )
        if rows:
            names = ", ".join(sorted(repr(row["hardware"]) for row in rows))
            return (
                f"{message}; its runs are on hardware {names}: name one of them, "
                "or leave the hardware out to take the latest run"
            )
    rows = _query(
        path,
        "SELECT DISTINCT model FROM runs WHERE kind = ? AND model IS NOT NULL",
        [kind],
    )
    if not rows:
        return (
            f"{message}; it holds no `bench {kind}` at all: run `tokenmill bench "
            f"{kind}` against the model first"
        )
    names = ", ".join(sorted(repr(row["model"]) for row in rows))
    return (
        f"{message}; it has runs of {names}: name one with --capacity-model, or "
        f"run `tokenmill bench {kind}` against {model!r}"
    )


def _query(path: Path, query: str, params: list[str]) -> list[sqlite3.Row]:
    # Read-only: a report must never create or change the history it reads.
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(query, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise BreakEvenError(
            f"{path}: cannot read it as a bench history ({exc}); give the "
            "bench.sqlite3 that `tokenmill bench` writes"
        ) from None
