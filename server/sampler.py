"""Sampling telemetry in the background, and summarizing a window of samples.

The sources (NVML or psutil) live in `server.telemetry`; this module turns their
readings into the means, peaks and energy figures that gauges and benchmarks show.
"""

import asyncio
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from server.telemetry import DeviceSample, TelemetrySource

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TelemetrySummary:
    """One device over a window of samples; None where no sample had the reading."""

    device: str
    index: int
    name: str
    num_samples: int
    duration_s: float
    mean_utilization_pct: float | None
    peak_utilization_pct: float | None
    mean_memory_used_bytes: float | None
    peak_memory_used_bytes: int | None
    mean_power_w: float | None
    peak_power_w: float | None
    energy_j: float | None

    @classmethod
    def from_samples(cls, samples: Sequence[DeviceSample]) -> "TelemetrySummary":
        if not samples:
            raise ValueError("cannot summarize 0 samples; take at least one first")
        ordered = sorted(samples, key=lambda sample: sample.timestamp_s)
        utilization = _present(s.utilization_pct for s in ordered)
        memory = [
            s.memory_used_bytes for s in ordered if s.memory_used_bytes is not None
        ]
        power = _present(s.power_w for s in ordered)
        return cls(
            device=ordered[0].device,
            index=ordered[0].index,
            name=ordered[0].name,
            num_samples=len(ordered),
            duration_s=ordered[-1].timestamp_s - ordered[0].timestamp_s,
            mean_utilization_pct=_mean(utilization),
            peak_utilization_pct=max(utilization, default=None),
            mean_memory_used_bytes=_mean(memory),
            peak_memory_used_bytes=max(memory, default=None),
            mean_power_w=_mean(power),
            peak_power_w=max(power, default=None),
            energy_j=_energy_j(ordered),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _present(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _energy_j(ordered: Sequence[DeviceSample]) -> float | None:
    if len(ordered) < 2:
        return None  # a single instant has no window to spend energy over

    # The driver's counter integrates far finer than we sample, so prefer it; it
    # only goes backwards when the driver reloads, and then it is useless.
    first_j, last_j = ordered[0].energy_j, ordered[-1].energy_j
    if first_j is not None and last_j is not None and last_j >= first_j:
        return last_j - first_j

    powered = [(s.timestamp_s, s.power_w) for s in ordered if s.power_w is not None]
    if len(powered) < 2:
        return None
    return sum(
        (t1_s - t0_s) * (p0_w + p1_w) / 2
        for (t0_s, p0_w), (t1_s, p1_w) in itertools.pairwise(powered)
    )


class Sampler:
    """Samples a source every `interval_s` in the background into a ring buffer.

    Keeps the last `max_ticks` rounds of samples (one sample per device per round).
    Use as `async with Sampler(source):` or call `start()` and `stop()`; closing the
    source stays with whoever opened it.
    """

    def __init__(
        self, source: TelemetrySource, interval_s: float = 1.0, max_ticks: int = 3600
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}; try 1.0")
        if max_ticks < 1:
            raise ValueError(f"max_ticks must be >= 1, got {max_ticks}; try 3600")
        self.interval_s = interval_s
        self._source = source
        self._ticks: deque[list[DeviceSample]] = deque(maxlen=max_ticks)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._is_failing = False

    @property
    def device(self) -> str:
        return self._source.device

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("Sampler is already running; call stop() first")
        # Sample once before returning, so latest() has data right away.
        await self._tick()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="telemetry-sampler")
        logger.info(
            "telemetry sampler started: %s every %ss", self.device, self.interval_s
        )

    async def stop(self) -> None:
        if self._task is None:
            return
        # Let an in-flight NVML call finish rather than cancel it, so the owner
        # can close the source right after stop() returns.
        self._stopping.set()
        await self._task
        self._task = None

    async def __aenter__(self) -> "Sampler":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def latest(self) -> list[DeviceSample]:
        return list(self._ticks[-1]) if self._ticks else []

    def summary(self, since_s: float | None = None) -> list[TelemetrySummary]:
        """Per-device summary of the buffered samples taken at or after `since_s`."""
        window = [
            sample
            for tick in list(self._ticks)
            for sample in tick
            if since_s is None or sample.timestamp_s >= since_s
        ]
        keys = sorted({(sample.device, sample.index) for sample in window})
        return [
            TelemetrySummary.from_samples(
                [s for s in window if (s.device, s.index) == key]
            )
            for key in keys
        ]

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
            except TimeoutError:
                await self._tick()
            else:
                return

    async def _tick(self) -> None:
        try:
            samples = await asyncio.to_thread(self._source.sample)
        except Exception as exc:
            # A lost GPU or a flaky sensor must not take the gateway down with it;
            # warn once per run of failures and keep trying.
            if not self._is_failing:
                logger.warning("telemetry sample failed; will keep trying: %s", exc)
            self._is_failing = True
            return
        if self._is_failing:
            logger.info("telemetry sampling recovered")
        self._is_failing = False
        self._ticks.append(samples)
