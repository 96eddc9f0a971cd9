"""The ledger: every field lands, commits are shared, failures surface, kill -9."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.ledger import Ledger
from server.ledger_schema import LedgerError, open_engine, requests, schema_version
from server.records import RequestRecord

pytest_plugins = ["tests.server.conftest_postgres"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    opened = Ledger.open(ledger_url)
    yield opened
    await opened.close()


def make_record(request_id: str, **fields: object) -> RequestRecord:
    record = RequestRecord(
        request_id=request_id,
        model="m",
        endpoint="/v1/chat/completions",
        is_stream=False,
        started_at=1000.0,
    )
    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


def test_every_record_field_has_a_column() -> None:
    fields = {f.name for f in dataclasses.fields(RequestRecord)}
    assert fields <= set(requests.c.keys())


async def test_submit_persists_every_field(ledger: Ledger) -> None:
    record = RequestRecord(
        request_id="req-1",
        model="smol",
        endpoint="/v1/chat/completions",
        is_stream=True,
        started_at=1_700_000_000.25,
        status="error",
        http_status=502,
        finish_reason="length",
        num_prompt_tokens=11,
        num_cached_tokens=3,
        num_completion_tokens=7,
        ttft_s=0.125,
        duration_s=1.5,
        error_message="upstream went away",
        key_name="alice",
        tag="search",
        user="u-9",
        list_cost_usd=0.000125,
        api_equivalent_cost_usd=0.0025,
        work_s=0.75,
    )
    await ledger.submit(record)

    [row] = await ledger.fetch_requests()
    assert {k: row[k] for k in record.to_dict()} == record.to_dict()
    assert row["finished_at"] >= record.started_at
    assert row["feedback"] is None
    assert row["feedback_at"] is None


async def test_concurrent_submits_share_commits_and_all_land(ledger: Ledger) -> None:
    await ledger.submit(make_record("warm-up"))
    commits_before = ledger.num_commits

    await asyncio.gather(*(ledger.submit(make_record(f"r{i}")) for i in range(64)))

    num_commits = ledger.num_commits - commits_before
    assert num_commits <= 16, f"64 submits took {num_commits} commits"
    ids = {row["request_id"] for row in await ledger.fetch_requests()}
    assert ids == {"warm-up"} | {f"r{i}" for i in range(64)}


async def test_a_bad_row_fails_only_its_own_submit(ledger: Ledger) -> None:
    await ledger.submit(make_record("dup"))

    results = await asyncio.gather(
        ledger.submit(make_record("a")),
        ledger.submit(make_record("dup")),
        ledger.submit(make_record("b")),
        return_exceptions=True,
    )

    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], LedgerError)
    assert "refused this row" in str(results[1])
    ids = [row["request_id"] for row in await ledger.fetch_requests()]
    assert sorted(ids) == ["a", "b", "dup"]


async def test_feedback(ledger: Ledger) -> None:
    await ledger.submit(make_record("req-1"))

    assert await ledger.set_feedback("req-1", "accepted") is True
    assert await ledger.set_feedback("no-such-request", "accepted") is False
    with pytest.raises(ValueError, match="feedback outcome ''"):
        await ledger.set_feedback("req-1", "")

    [row] = await ledger.fetch_requests()
    assert row["feedback"] == "accepted"
    assert row["feedback_at"] is not None


async def test_uptime_heartbeats_extend_one_interval(ledger: Ledger) -> None:
    await ledger.record_uptime("m", 100.0, 100.0)
    await ledger.record_uptime("m", 100.0, 130.0)
    await ledger.record_uptime("m", 100.0, 160.0)
    await ledger.record_uptime("m", 500.0, 530.0)  # restarted
    await ledger.record_uptime("other", 150.0, 170.0)

    assert await ledger.fetch_uptime(0.0, 1000.0) == [
        ("m", 100.0, 160.0),
        ("m", 500.0, 530.0),
        ("other", 150.0, 170.0),
    ]
    assert await ledger.fetch_uptime(165.0, 400.0) == [("other", 150.0, 170.0)]
    with pytest.raises(ValueError, match="before it started"):
        await ledger.record_uptime("m", 100.0, 99.0)


async def test_fetch_filters(ledger: Ledger) -> None:
    await ledger.submit(make_record("a", started_at=10.0, key_name="alice"))
    await ledger.submit(make_record("b", started_at=20.0, key_name="bob"))
    await ledger.submit(make_record("c", started_at=30.0, model="other"))

    async def ids(**filters: object) -> list[str]:
        rows = await ledger.fetch_requests(**filters)  # type: ignore[arg-type]
        return [row["request_id"] for row in rows]

    assert await ids() == ["a", "b", "c"]
    assert await ids(start_s=20.0) == ["b", "c"]
    assert await ids(end_s=20.0) == ["a"]
    assert await ids(key_name="bob") == ["b"]
    assert await ids(model="other") == ["c"]
    assert await ids(start_s=15.0, end_s=35.0, model="m") == ["b"]


async def test_a_failing_database_raises_from_submit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE requests")

    with pytest.raises(LedgerError, match="no such table: requests"):
        await asyncio.wait_for(ledger.submit(make_record("lost")), timeout=10)
    batch = [ledger.submit(make_record(f"lost-{i}")) for i in range(8)]
    results = await asyncio.wait_for(
        asyncio.gather(*batch, return_exceptions=True), timeout=10
    )
    assert all(isinstance(result, LedgerError) for result in results)
    await ledger.close()


async def test_submit_after_close_raises(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    await ledger.close()

    with pytest.raises(LedgerError, match="closed"):
        await ledger.submit(make_record("late"))


def test_open_rejects_in_memory_and_newer_schemas(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="in-memory"):
        open_engine("sqlite://")
    with pytest.raises(LedgerError, match="not a database URL"):
        open_engine("ledger.sqlite3")

    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema_version).values(version=999))
    engine.dispose()
    with pytest.raises(LedgerError, match="schema version 999"):
        open_engine(url)


WRITER_SCRIPT = """
import asyncio, sys
from server.ledger import Ledger
from server.records import RequestRecord

async def writer(ledger, worker):
    for i in range(1_000_000):
        request_id = f"w{worker}-{i}"
        await ledger.submit(RequestRecord(request_id, "m", "/v1/completions", False))
        sys.stdout.write(request_id + "\\n")
        sys.stdout.flush()

async def main():
    ledger = Ledger.open(sys.argv[1])
    await asyncio.gather(*(writer(ledger, w) for w in range(8)))

asyncio.run(main())
"""


def test_every_acknowledged_submit_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, f"sqlite:///{path}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    while len(acknowledged) < 500:
        line = child.stdout.readline()
        if not line:
            child.wait()
            pytest.fail(f"writer exited early: {child.stderr and child.stderr.read()}")
        acknowledged.append(line.strip())

    os.kill(child.pid, signal.SIGKILL)
    # Ids already in the pipe were printed after their submits returned: they count.
    acknowledged += [line for line in child.stdout.read().splitlines() if line]
    child.wait()
    child.stderr and child.stderr.close()
    child.stdout.close()

    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as conn:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM requests")}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged requests lost, e.g. {missing}"
