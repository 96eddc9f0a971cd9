"""The durable ledger: every request's record, engine uptime, and API keys.

One SQLAlchemy Core code path serves the embedded SQLite default and Postgres.
Writes go through one writer thread that group-commits: whatever is queued when it
wakes goes into one transaction, so under load many requests share one commit and
the event loop never waits on the disk. `submit` returns only once its row is
committed, which is what lets the gateway promise that every response a client
received whole is on record.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.ledger_schema import (
    LedgerError,
    engine_uptime,
    open_engine,
    requests,
    safe_url,
)
from server.records import RequestRecord

logger = logging.getLogger(__name__)

MAX_BATCH_JOBS = 1000
MAX_FEEDBACK_CHARS = 64
_ROW_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)


@dataclass
class _Job:
    """One write waiting for the writer: a request row, or an operation."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    row: tuple[Any, ...] | None = None
    op: Callable[[Connection], Any] | None = None


class Ledger:
    """Persists request records, engine uptime and feedback; reads them back."""

    def __init__(self, engine: Engine, max_batch_jobs: int = MAX_BATCH_JOBS) -> None:
        self.engine = engine
        self.max_batch_jobs = max_batch_jobs
        # Written by the writer thread only; for tests and benchmarks.
        self.num_commits = 0
        self.num_rows_written = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closing = threading.Lock()
        self._is_closed = False
        self._insert_sql, columns = _insert_statement(engine)
        self._record_values = operator.attrgetter(*columns[:-1])
        # The writer thread's own connection: checking one out of the pool (and
        # resetting it on return) per batch cost more than the rows themselves.
        self._connection: Connection | None = None
        self._writer = threading.Thread(
            target=self._write_loop, name="ledger-writer", daemon=True
        )
        self._writer.start()

    @classmethod
    def open(cls, url: str) -> Ledger:
        return cls(open_engine(url))

    async def submit(self, record: RequestRecord) -> None:
        """Write `record`; returns once it is committed, raises if that failed."""
        await self._enqueue(row=(*self._record_values(record), time.time()))

    async def record_uptime(self, model: str, started_at: float, now: float) -> None:
        """Extend (or start) the interval in which `model`'s engine was ready."""
        if now < started_at:
            raise ValueError(
                f"uptime of {model!r} would end at {now} before it started at "
                f"{started_at}; pass the engine's start time and the current time"
            )
        table = engine_uptime

        def upsert(conn: Connection) -> None:
            # Exact float match is safe: both backends store IEEE doubles, and the
            # gateway passes back the very started_at value it first wrote.
            match = (table.c.model == model) & (table.c.started_at == started_at)
            updated = conn.execute(table.update().where(match).values(last_seen_at=now))
            if updated.rowcount == 0:
                conn.execute(
                    table.insert().values(
                        model=model, started_at=started_at, last_seen_at=now
                    )
                )

        await self._enqueue(op=upsert)

    async def set_feedback(self, request_id: str, outcome: str) -> bool:
        """Record a client's verdict on a request; False if the id is unknown."""
        if not outcome or len(outcome) > MAX_FEEDBACK_CHARS:
            raise ValueError(
                f"feedback outcome {outcome!r} must be 1 to {MAX_FEEDBACK_CHARS} "
                "characters, e.g. 'accepted' or 'rejected'"
            )

        def update(conn: Connection) -> bool:
            result = conn.execute(
                requests.update()
                .where(requests.c.request_id == request_id)
                .values(feedback=outcome, feedback_at=time.time())
            )
            return result.rowcount > 0

        return bool(await self._enqueue(op=update))

    async def fetch_requests(
        self,
        start_s: float | None = None,
        end_s: float | None = None,
        key_name: str | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """Requests started in [start_s, end_s), oldest first, as column dicts."""
        columns = [c for c in requests.c if c.name != "id"]
        query = sa.select(*columns).order_by(requests.c.started_at, requests.c.id)
        if start_s is not None:
            query = query.where(requests.c.started_at >= start_s)
        if end_s is not None:
            query = query.where(requests.c.started_at < end_s)
        if key_name is not None:
            query = query.where(requests.c.key_name == key_name)
        if model is not None:
            query = query.where(requests.c.model == model)
        return await asyncio.to_thread(self._read, query)

    async def fetch_uptime(
        self, start_s: float, end_s: float
    ) -> list[tuple[str, float, float]]:
        """(model, started_at, last_seen_at) of intervals overlapping the window.

        Intervals are returned whole, not clipped to the window.
        """
        table = engine_uptime
        query = (
            sa.select(table.c.model, table.c.started_at, table.c.last_seen_at)
            .where(table.c.started_at < end_s, table.c.last_seen_at > start_s)
            .order_by(table.c.model, table.c.started_at)
        )
        rows = await asyncio.to_thread(self._read, query)
        return [(r["model"], r["started_at"], r["last_seen_at"]) for r in rows]

    async def close(self) -> None:
        """Write everything already submitted, then stop the writer."""
        with self._closing:
            if not self._is_closed:
                self._is_closed = True
                self._queue.put(None)
        await asyncio.to_thread(self._writer.join)
        self.engine.dispose()

    def _read(self, query: sa.Executable) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    async def _enqueue(
        self,
        row: tuple[Any, ...] | None = None,
        op: Callable[[Connection], Any] | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), row=row, op=op)
        # The lock keeps a job from slipping in behind close()'s stop marker,
        # where nobody would ever settle its future.
        with self._closing:
            if self._is_closed:
                raise LedgerError("the ledger is closed; open a new one to write")
            self._queue.put(job)
        return await job.future

    def _write_loop(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                self._write(batch)
        finally:
            if self._connection is not None:
                self._connection.close()
            # Only reached on close (or a bug): nobody may be left waiting.
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _settle(job, error=LedgerError("the ledger closed before writing"))

    def _take_batch(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch_jobs:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after writing this batch
                break
            batch.append(job)
        return batch

    def _write(self, batch: list[_Job]) -> None:
        try:
            results = self._commit(batch)
        except Exception as exc:
            is_row_error = isinstance(exc, _ROW_ERRORS)
            if len(batch) > 1 and is_row_error:
                # One bad row (say, a duplicate request id) must not sink the
                # others: retry each in its own transaction. A database-wide
                # failure is not retried, or a batch would wait out its timeout
                # once per row.
                logger.warning(
                    "ledger batch of %d failed (%s); retrying singly", len(batch), exc
                )
                for job in batch:
                    self._write([job])
                return
            if not is_row_error and self._connection is not None:
                # Start the next batch on a fresh connection.
                self._connection.close()
                self._connection = None
            hint = (
                "the database refused this row"
                if is_row_error
                else "check that the database is reachable and writable"
            )
            cause = getattr(exc, "orig", None) or exc
            for job in batch:
                error = LedgerError(
                    f"could not write to the ledger at {safe_url(self.engine)}: "
                    f"{cause}; {hint}"
                )
                error.__cause__ = exc
                _settle(job, error=error)
            return
        _settle_all(batch, results)

    def _commit(self, batch: list[_Job]) -> list[Any]:
        rows = [job.row for job in batch if job.row is not None]
        if self._connection is None or self._connection.invalidated:
            self._connection = self.engine.connect()
        conn = self._connection
        with conn.begin():
            # Rows first, so feedback queued behind its request finds it. The
            # driver-level executemany skips SQLAlchemy's per-row processing, which
            # was the writer's main cost at thousands of rows a second.
            if rows:
                conn.exec_driver_sql(self._insert_sql, rows)
            results = [job.op(conn) if job.op else None for job in batch]
        self.num_commits += 1
        self.num_rows_written += len(rows)
        return results


def _insert_statement(engine: Engine) -> tuple[str, list[str]]:
    """A plain INSERT of one request row in the driver's own parameter style."""
    # The record's fields in table order, then the time the ledger got the row.
    columns = [
        c.name
        for c in requests.c
        if c.name not in ("id", "feedback", "feedback_at", "finished_at")
    ] + ["finished_at"]
    quote = engine.dialect.identifier_preparer.quote
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {quote(requests.name)} ({', '.join(map(quote, columns))}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    return sql, columns


def _settle_all(batch: list[_Job], results: list[Any]) -> None:
    """Settle a committed batch with one wake-up per event loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any]]] = {}
    for job, result in zip(batch, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job, result))

    def settle(jobs: list[tuple[_Job, Any]]) -> None:
        for job, result in jobs:
            if not job.future.done():
                job.future.set_result(result)

    for loop, jobs in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle, jobs)
        except RuntimeError:
            logger.debug("ledger write finished after its event loop closed")


def _settle(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the submitter was cancelled; the row stays written
            return
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        logger.debug("ledger write finished after its event loop closed")
