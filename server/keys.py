"""API keys: shown once at creation, stored only as hashes, checked from a cache.

The gateway checks a key on every request, so `authenticate` answers from memory
and reloads the active keys from the database at most every
`refresh_interval_s`; a key revoked by the CLI in another process stops working
within that interval.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.ledger_schema import api_keys, open_engine

logger = logging.getLogger(__name__)

KEY_PREFIX = "tm-"
NUM_KEY_BYTES = 32
DEFAULT_REFRESH_INTERVAL_S = 2.0
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class KeyStoreError(ValueError):
    """A key operation named a key wrongly: a taken, unknown or invalid name."""


@dataclass(frozen=True)
class KeyInfo:
    """What is known about a key, never the key or its hash."""

    name: str
    is_admin: bool
    created_at: float
    revoked_at: float | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(key: str) -> str:
    """The stored form of a key.

    Keys are 256 random bits, so nothing can be guessed from a fast hash and a
    slow password hash (bcrypt, argon2) would only cost every request its time.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Creates, lists, revokes and checks API keys kept in the ledger database."""

    def __init__(
        self,
        engine: Engine,
        refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.refresh_interval_s = refresh_interval_s
        self.num_refreshes = 0
        self._clock = clock
        self._active: builtins.list[tuple[bytes, KeyInfo]] = []
        self._loaded_at = -math.inf
        self._has_loaded = False
        self._refresh: asyncio.Future[None] | None = None

    @classmethod
    def open(
        cls, url: str, refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S
    ) -> KeyStore:
        return cls(open_engine(url), refresh_interval_s)

    def create(self, name: str, admin: bool = False) -> str:
        """Store a new key named `name` and return it: the only time it is seen."""
        if not _NAME_PATTERN.fullmatch(name):
            raise KeyStoreError(
                f"API key name {name!r} is not allowed; use 1 to 64 letters, digits "
                "or . _ @ -, starting with a letter or digit"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(NUM_KEY_BYTES)
        row = {
            "name": name,
            "key_hash": hash_key(key),
            "is_admin": admin,
            "created_at": time.time(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(api_keys.insert().values(**row))
        except sa.exc.IntegrityError:
            # Names stay taken after revocation, so a key_name in the ledger
            # always means one key.
            raise KeyStoreError(
                f"an API key named {name!r} already exists (revoked keys keep their "
                "names); choose another name"
            ) from None
        self._loaded_at = -math.inf
        logger.info("created API key %r (admin=%s)", name, admin)
        return key

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        query = sa.select(
            api_keys.c.name,
            api_keys.c.is_admin,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
        ).order_by(api_keys.c.created_at, api_keys.c.name)
        with self.engine.connect() as conn:
            return [KeyInfo(**row._mapping) for row in conn.execute(query)]

    def revoke(self, name: str) -> None:
        """Make the key named `name` stop working, everywhere, from now on."""
        with self.engine.begin() as conn:
            query = sa.select(api_keys.c.revoked_at).where(api_keys.c.name == name)
            found = conn.execute(query).first()
            if found is None:
                names = conn.execute(sa.select(api_keys.c.name)).scalars().all()
                raise KeyStoreError(
                    f"no API key is named {name!r}; existing keys: "
                    f"{', '.join(sorted(names)) or 'none'}"
                )
            if found.revoked_at is not None:
                when = datetime.fromtimestamp(found.revoked_at, UTC)
                raise KeyStoreError(
                    f"API key {name!r} was already revoked at {when:%Y-%m-%d %H:%M} "
                    "UTC; nothing to do"
                )
            conn.execute(
                api_keys.update()
                .where(api_keys.c.name == name)
                .values(revoked_at=time.time())
            )
        self._loaded_at = -math.inf
        logger.info("revoked API key %r", name)

    async def authenticate(self, presented_key: str) -> KeyInfo | None:
        """The active key matching `presented_key`, or None."""
        await self._ensure_fresh()
        presented_hash = hashlib.sha256(presented_key.encode()).digest()
        match = None
        # Compare with every active key and never stop early, so the time taken
        # tells an attacker nothing about which key or how much of one matched.
        for key_hash, info in self._active:
            if hmac.compare_digest(key_hash, presented_hash):
                match = info
        return match

    async def has_keys(self) -> bool:
        """Whether any active key exists (without one, the gateway is open)."""
        await self._ensure_fresh()
        return bool(self._active)

    def close(self) -> None:
        self.engine.dispose()

    async def _ensure_fresh(self) -> None:
        if self._clock() - self._loaded_at < self.refresh_interval_s:
            return
        # Requests that arrive during a reload share it rather than each start one.
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(asyncio.to_thread(self._reload))
        await asyncio.shield(self._refresh)

    def _reload(self) -> None:
        # Stamp the time before reading: a revocation committed while we read is
        # then still caught by the next reload.
        started_at = self._clock()
        query = sa.select(
            api_keys.c.name,
            api_keys.c.key_hash,
            api_keys.c.is_admin,
            api_keys.c.created_at,
        ).where(api_keys.c.revoked_at.is_(None))
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.OperationalError as exc:
            if not self._has_loaded:
                raise
            # Serving the last known keys beats refusing every request; revocations
            # wait until the database is back.
            logger.warning(
                "could not reload API keys, keeping the cached ones: %s", exc
            )
            self._loaded_at = started_at
            return
        self._active = [
            (
                bytes.fromhex(row.key_hash),
                KeyInfo(row.name, row.is_admin, row.created_at),
            )
            for row in rows
        ]
        self._loaded_at = started_at
        self._has_loaded = True
        self.num_refreshes += 1
