"""Every benchmark run, kept in SQLite (`$TOKENMILL_HOME/bench.sqlite3` by default).

One row per run: when, what kind (run, calibrate), the git revision, hardware,
engine version, model and URL as columns to filter on, and the whole configuration
and result as JSON, so later tools (compare, nightly) can read any figure.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

HISTORY_FILENAME = "bench.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    git_revision TEXT,
    hardware TEXT,
    engine_version TEXT,
    tokenmill_version TEXT,
    model TEXT,
    url TEXT,
    config_json TEXT NOT NULL,
    result_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_kind_model ON runs (kind, model, created_at);
"""


@dataclass(frozen=True)
class StoredRun:
    """One run as read back from the history."""

    id: int
    created_at: str
    kind: str
    git_revision: str | None
    hardware: str | None
    engine_version: str | None
    tokenmill_version: str | None
    model: str | None
    url: str | None
    config: dict[str, Any]
    result: dict[str, Any]


class History:
    """The run history in one SQLite file, created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            with connection:  # commits, or rolls back on an exception
                yield connection
        finally:
            connection.close()

    def record(self, result: dict[str, Any]) -> int:
        """Store a result made by `bench run` or `bench calibrate`; its run id."""
        environment = result.get("environment") or {}
        config = result.get("config") or {}
        row = (
            result["created_at"],
            result["kind"],
            environment.get("git_revision"),
            environment.get("hardware"),
            environment.get("engine_version"),
            environment.get("tokenmill_version"),
            config.get("model"),
            config.get("url"),
            orjson.dumps(config).decode(),
            orjson.dumps(result).decode(),
        )
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (created_at, kind, git_revision, hardware, "
                "engine_version, tokenmill_version, model, url, config_json, "
                "result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

    def runs(
        self, kind: str | None = None, model: str | None = None, limit: int = 20
    ) -> list[StoredRun]:
        """The latest `limit` runs, newest first, optionally of one kind or model."""
        query = "SELECT * FROM runs WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("kind", kind), ("model", model)):
            if value is not None:
                query += f" AND {column} = ?"
                params.append(value)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._connect() as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute(query, params).fetchall()
        return [_stored_run(row) for row in rows]


def _stored_run(row: sqlite3.Row) -> StoredRun:
    return StoredRun(
        id=row["id"],
        created_at=row["created_at"],
        kind=row["kind"],
        git_revision=row["git_revision"],
        hardware=row["hardware"],
        engine_version=row["engine_version"],
        tokenmill_version=row["tokenmill_version"],
        model=row["model"],
        url=row["url"],
        config=orjson.loads(row["config_json"]),
        result=orjson.loads(row["result_json"]),
    )
