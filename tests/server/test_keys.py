"""API keys: shown once, stored hashed, checked from a cache that sees revocations."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.keys import KEY_PREFIX, KeyInfo, KeyStore, KeyStoreError
from server.ledger_schema import api_keys, open_engine

pytest_plugins = ["tests.server.conftest_postgres"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(url: str, clock: FakeClock) -> Iterator[KeyStore]:
    # The cache's age is the test's to decide.
    opened = KeyStore(open_engine(url), refresh_interval_s=5.0, clock=clock)
    yield opened
    opened.close()


async def test_create_returns_the_key_once_and_stores_only_its_hash(
    store: KeyStore,
) -> None:
    key = store.create("alice", admin=True)

    assert key.startswith(KEY_PREFIX)
    assert len(key) == len(KEY_PREFIX) + 43  # 32 bytes, urlsafe base64
    [info] = store.list()
    assert info.name == "alice"
    assert info.is_admin is True
    assert info.revoked_at is None
    assert key not in repr(info)
    with store.engine.connect() as conn:
        [row] = conn.execute(sa.select(api_keys)).mappings().all()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(value) for value in row.values()}


def test_the_key_never_reaches_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    store = KeyStore.open(f"sqlite:///{path}")
    key = store.create("alice")
    store.close()

    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert key.encode() not in on_disk
    assert hashlib.sha256(key.encode()).hexdigest().encode() in on_disk


async def test_authenticate_accepts_good_keys_and_refuses_bad_and_revoked(
    store: KeyStore,
) -> None:
    assert await store.has_keys() is False
    alice = store.create("alice")
    bob = store.create("bob", admin=True)

    found = await store.authenticate(bob)
    assert isinstance(found, KeyInfo)
    assert (found.name, found.is_admin) == ("bob", True)
    assert await store.authenticate(alice + "x") is None
    assert await store.authenticate("") is None
    assert await store.has_keys() is True

    store.revoke("alice")
    store.revoke("bob")
    assert await store.authenticate(alice) is None
    assert await store.has_keys() is False
    assert [info.is_revoked for info in store.list()] == [True, True]


async def test_authenticate_answers_from_the_cache(
    store: KeyStore, clock: FakeClock
) -> None:
    key = store.create("alice")
    for _ in range(100):
        assert await store.authenticate(key) is not None
    assert store.num_refreshes == 1

    clock.now_s += 10.0
    await store.authenticate(key)
    assert store.num_refreshes == 2


REVOKE_SCRIPT = """
import sys
from server.keys import KeyStore
KeyStore.open(sys.argv[1]).revoke("alice")
"""


async def test_a_revoke_from_another_process_applies_after_the_refresh_interval(
    store: KeyStore, url: str, clock: FakeClock
) -> None:
    key = store.create("alice")
    assert await store.authenticate(key) is not None

    subprocess.run(
        [sys.executable, "-c", REVOKE_SCRIPT, url], cwd=REPO_ROOT, check=True
    )

    clock.now_s += 4.0  # within the 5 s interval: still the cached answer
    assert await store.authenticate(key) is not None
    clock.now_s += 2.0
    assert await store.authenticate(key) is None


def test_a_duplicate_name_is_refused_even_after_revocation(store: KeyStore) -> None:
    store.create("alice")
    with pytest.raises(KeyStoreError, match="named 'alice' already exists"):
        store.create("alice")

    store.revoke("alice")
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create("alice")


def test_revoking_unknown_or_revoked_names_explains(store: KeyStore) -> None:
    store.create("alice")
    with pytest.raises(KeyStoreError, match=r"no API key is named 'bob'.*: alice"):
        store.revoke("bob")

    store.revoke("alice")
    with pytest.raises(KeyStoreError, match="already revoked"):
        store.revoke("alice")


@pytest.mark.parametrize("name", ["", " alice", "a b", "x" * 65])
def test_bad_names_are_refused(store: KeyStore, name: str) -> None:
    with pytest.raises(KeyStoreError, match="is not allowed"):
        store.create(name)
