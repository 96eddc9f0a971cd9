"""Keeps each model's upstream serving: starts local engines and restarts them with
backoff when they die; probes remote endpoints so that readiness is always known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from server.engine_process import EngineProcess, EngineStartError
from server.upstream import Upstream

logger = logging.getLogger(__name__)


class EngineState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"
    UNREACHABLE = "unreachable"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts: doubling from `initial_s` up to `max_s`; a run that
    stayed up for `reset_after_s` starts the sequence over."""

    initial_s: float = 1.0
    max_s: float = 60.0
    reset_after_s: float = 300.0

    def delay_s(self, num_failures: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(0, num_failures - 1))


class EngineSupervisor:
    """Runs one local engine for as long as the gateway runs."""

    def __init__(
        self,
        make_process: Callable[[], EngineProcess],
        startup_timeout_s: float,
        backoff: Backoff = Backoff(),
        health_interval_s: float = 5.0,
        max_health_failures: int = 3,
    ) -> None:
        self._make_process = make_process
        self._startup_timeout_s = startup_timeout_s
        self._backoff = backoff
        self._health_interval_s = health_interval_s
        self._max_health_failures = max_health_failures
        self.state = EngineState.STOPPED
        self.num_restarts = 0
        # Wall-clock time the running engine became ready; None while not ready.
        self.ready_since: float | None = None
        self.process: EngineProcess | None = None
        self.upstream: Upstream | None = None

    async def run(self) -> None:
        """Start, watch and restart the engine until cancelled."""
        num_failures = 0
        try:
            while True:
                started_at = time.monotonic()
                await self._run_once()
                if time.monotonic() - started_at >= self._backoff.reset_after_s:
                    num_failures = 0
                num_failures += 1
                self.num_restarts += 1
                delay_s = self._backoff.delay_s(num_failures)
                self.state = EngineState.BACKOFF
                logger.warning("engine: restarting in %.0f s", delay_s)
                await asyncio.sleep(delay_s)
        finally:
            await self._stop()
            self.state = EngineState.STOPPED

    async def _run_once(self) -> None:
        self.state = EngineState.STARTING
        process = self.process = self._make_process()
        upstream = process.upstream()
        await process.start()
        try:
            await process.wait_healthy(upstream, self._startup_timeout_s)
        except EngineStartError as exc:
            logger.error("%s", exc)
            await self._stop()
            return
        self.upstream = upstream
        upstream.is_ready = True
        self.ready_since = time.time()
        self.state = EngineState.READY
        logger.info("engine %s: ready (pid %s)", process.model.name, process.pid)
        exited = asyncio.ensure_future(process.wait())
        try:
            await self._watch_health(upstream, exited)
        finally:
            exited.cancel()
            await self._stop()

    async def _watch_health(self, upstream: Upstream, exited: asyncio.Future) -> None:
        num_health_failures = 0
        while True:
            done, _ = await asyncio.wait({exited}, timeout=self._health_interval_s)
            if done:
                logger.error(
                    "engine %s: exited with code %s",
                    upstream.name,
                    exited.result(),
                )
                return
            if await upstream.is_healthy():
                num_health_failures = 0
                continue
            num_health_failures += 1
            if num_health_failures >= self._max_health_failures:
                logger.error(
                    "engine %s: failed %d health checks in a row",
                    upstream.name,
                    num_health_failures,
                )
                return

    async def _stop(self) -> None:
        upstream, self.upstream = self.upstream, None
        self.ready_since = None
        if upstream is not None:
            upstream.is_ready = False
        # Finish the stop even if our own task is being cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            if self.process is not None:
                await asyncio.shield(self.process.stop())
            if upstream is not None:
                await asyncio.shield(upstream.close())


async def watch_remote(upstream: Upstream, interval_s: float = 10.0) -> None:
    """Probe a remote endpoint forever and keep `upstream.is_ready` current."""
    while True:
        healthy = await upstream.is_healthy()
        if healthy != upstream.is_ready:
            log = logger.info if healthy else logger.warning
            log(
                "remote %s at %s is %s",
                upstream.name,
                upstream.base_url,
                "ready" if healthy else "unreachable",
            )
        upstream.is_ready = healthy
        await asyncio.sleep(interval_s)
