"""The ledger's tables, and opening its database (SQLite or Postgres).

Kept apart from the writer in `server.ledger` so that the key store and tools that
only read can share the schema without the group-commit machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

# Migrations, when the schema first changes: bump SCHEMA_VERSION and, on open, run
# the numbered steps from the stored version up (each step an ALTER in its own
# transaction) before create_all; a stored version above ours refuses to open.
SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata, sa.Column("version", sa.Integer, nullable=False)
)

# A column per RequestRecord field (tests check none is missing), then the
# ledger's own: when the row was written and the client's later feedback.
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, nullable=False, unique=True),
    sa.Column("model", sa.Text, nullable=False, index=True),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("is_stream", sa.Boolean, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False, index=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("http_status", sa.Integer, nullable=False),
    sa.Column("finish_reason", sa.Text),
    sa.Column("num_prompt_tokens", sa.Integer),
    sa.Column("num_cached_tokens", sa.Integer),
    sa.Column("num_completion_tokens", sa.Integer),
    sa.Column("ttft_s", sa.Double),
    sa.Column("duration_s", sa.Double),
    sa.Column("error_message", sa.Text),
    sa.Column("key_name", sa.Text, index=True),
    sa.Column("tag", sa.Text),
    sa.Column("user", sa.Text),
    sa.Column("list_cost_usd", sa.Double),
    sa.Column("api_equivalent_cost_usd", sa.Double),
    sa.Column("work_s", sa.Double),
    sa.Column("finished_at", sa.Double, nullable=False),
    sa.Column("feedback", sa.Text),
    sa.Column("feedback_at", sa.Double),
)

# One row per interval in which an engine was ready; the gateway heartbeats
# last_seen_at, so a killed gateway loses at most one heartbeat of uptime.
engine_uptime = sa.Table(
    "engine_uptime",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("last_seen_at", sa.Double, nullable=False),
    sa.UniqueConstraint("model", "started_at"),
)

# Only a SHA-256 of each key is kept; server.keys owns the logic.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double),
)


class LedgerError(RuntimeError):
    """The ledger could not be opened, or a write to it failed."""


def default_url(home: Path) -> str:
    """The embedded ledger's URL inside tokenmill's data directory."""
    return f"sqlite:///{home / 'ledger.sqlite3'}"


def open_engine(url: str) -> Engine:
    """An engine for the ledger database at `url`, its tables created if missing."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise LedgerError(
            f"ledger URL {url!r} is not a database URL; use "
            "sqlite:///path/to/ledger.sqlite3 or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        if parsed.drivername == "postgresql":
            # SQLAlchemy's default Postgres driver is psycopg2, which we don't ship.
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, pool_pre_ping=True)

    try:
        metadata.create_all(engine)
        _check_schema_version(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise LedgerError(
            f"cannot open the ledger at {safe_url(engine)}: {exc.orig}; check that "
            "the database server is running and the URL's user may create tables"
        ) from exc
    return engine


def _sqlite_engine(parsed: sa.URL) -> Engine:
    if parsed.database in (None, "", ":memory:"):
        raise LedgerError(
            f"ledger URL {parsed!s} is an in-memory SQLite database, which every "
            "connection sees empty and which dies with the process; give a file: "
            "sqlite:///path/to/ledger.sqlite3"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed)
    sa.event.listen(engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL with synchronous=NORMAL: a commit is in the WAL file (the OS page cache)
    # when it returns, so it survives a killed gateway (SIGKILL, OOM killer); only
    # a crash of the machine itself can lose the last commits. That is the promise.
    # FULL would fsync every commit for power-loss safety at many times the cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # The CLI (managing keys) may write while the gateway does: wait, don't fail.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _check_schema_version(engine: Engine) -> None:
    with engine.begin() as conn:
        stored = conn.execute(sa.select(sa.func.max(schema_version.c.version)))
        version = stored.scalar()
        if version is None:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif version > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {safe_url(engine)} has schema version {version}, "
                f"newer than this tokenmill understands ({SCHEMA_VERSION}); "
                "upgrade tokenmill"
            )


def safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
