"""A throwaway PostgreSQL server for the ledger's Postgres tests.

Loaded as a plugin (`pytest_plugins`) by the modules that need it. The server
runs from this machine's PostgreSQL binaries in a temporary directory, listens
only on a Unix socket there, and is stopped at the end of the session. Each test
gets a database of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_BIN = Path(os.environ.get("TOKENMILL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root, so root hands the server to `postgres`.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[Path, int]]:
    """(socket directory, port) of a running PostgreSQL server."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(
            f"PostgreSQL binaries not found in {PG_BIN} (TOKENMILL_TEST_PG_BIN)"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root needs runuser to start PostgreSQL as postgres")
    root = Path(tempfile.mkdtemp(prefix="tokenmill-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root needs a 'postgres' user to run PostgreSQL")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", _free_port()

    initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres"]
    subprocess.run(
        _as_postgres([*initdb, "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    # No TCP, no fsync: a private, disposable server that starts in a second.
    options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off"
    pg_ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield root, port
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: tuple[Path, int]) -> str:
    """A SQLAlchemy URL of a fresh, empty database on the test server."""
    socket_dir, port = postgres_server
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        host=str(socket_dir),
        port=port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql+psycopg://postgres@/{name}?host={socket_dir}&port={port}"
