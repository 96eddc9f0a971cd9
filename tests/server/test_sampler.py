import asyncio
import json
import logging
import time

import pytest

from server.sampler import Sampler, TelemetrySummary
from server.telemetry import DeviceSample, PsutilSource


def make_sample(
    timestamp_s: float,
    *,
    utilization_pct: float | None = None,
    memory_used_bytes: int | None = None,
    power_w: float | None = None,
    energy_j: float | None = None,
    index: int = 0,
) -> DeviceSample:
    return DeviceSample(
        timestamp_s=timestamp_s,
        device="nvidia",
        index=index,
        name=f"gpu{index}",
        utilization_pct=utilization_pct,
        memory_used_bytes=memory_used_bytes,
        memory_total_bytes=None if memory_used_bytes is None else 1000,
        power_w=power_w,
        energy_j=energy_j,
        temperature_c=None,
        sm_clock_mhz=None,
    )


class ScriptedSource:
    """Returns one round per call for two GPUs, timestamped 0, 1, 2, ..."""

    device = "nvidia"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.num_calls = 0
        self.delay_s = delay_s
        self.errors: list[Exception] = []

    def sample(self) -> list[DeviceSample]:
        time.sleep(self.delay_s)
        if self.errors:
            raise self.errors.pop(0)
        t_s = float(self.num_calls)
        self.num_calls += 1
        return [
            make_sample(t_s, utilization_pct=10 * t_s, power_w=100 + index, index=index)
            for index in (1, 0)
        ]

    def close(self) -> None:
        pass


# --- summary math -------------------------------------------------------------


def test_summary_means_and_peaks() -> None:
    samples = [
        make_sample(0.0, utilization_pct=10, memory_used_bytes=100, power_w=100),
        make_sample(1.0, utilization_pct=20, memory_used_bytes=200, power_w=200),
        make_sample(2.0, utilization_pct=60, memory_used_bytes=300, power_w=300),
        make_sample(3.0),  # a round where nothing could be read
    ]

    summary = TelemetrySummary.from_samples(samples)

    assert summary.num_samples == 4
    assert summary.duration_s == 3.0
    assert summary.mean_utilization_pct == pytest.approx(30.0)
    assert summary.peak_utilization_pct == 60
    assert summary.mean_memory_used_bytes == pytest.approx(200.0)
    assert summary.peak_memory_used_bytes == 300
    assert summary.mean_power_w == pytest.approx(200.0)
    assert summary.peak_power_w == 300


def test_summary_energy_prefers_the_counter() -> None:
    # Integrating power would give 400 J; the counter says 500 J and wins.
    samples = [
        make_sample(0.0, power_w=100, energy_j=1000.0),
        make_sample(1.0, power_w=200, energy_j=1200.0),
        make_sample(2.0, power_w=300, energy_j=1500.0),
    ]

    assert TelemetrySummary.from_samples(samples).energy_j == pytest.approx(500.0)


@pytest.mark.parametrize(
    "counter_j",
    [(None, None, None), (5000.0, 5100.0, 10.0)],
    ids=["no-counter", "counter-reset"],
)
def test_summary_energy_integrates_power_without_counter(
    counter_j: tuple[float | None, ...],
) -> None:
    samples = [
        make_sample(t_s, power_w=p_w, energy_j=e_j)
        for t_s, p_w, e_j in zip(
            (2.0, 0.0, 0.5), (300, 100, 200), counter_j, strict=True
        )
    ]

    # Trapezoids: 0.5 s * 150 W + 1.5 s * 250 W; the samples arrive out of order.
    assert TelemetrySummary.from_samples(samples).energy_j == pytest.approx(450.0)


def test_summary_without_readings_is_none_not_zero() -> None:
    summary = TelemetrySummary.from_samples([make_sample(0.0), make_sample(1.0)])

    assert summary.mean_utilization_pct is None
    assert summary.peak_memory_used_bytes is None
    assert summary.mean_power_w is None
    assert summary.energy_j is None


def test_summary_of_one_sample_has_no_energy() -> None:
    summary = TelemetrySummary.from_samples([make_sample(0.0, power_w=100, energy_j=5)])

    assert summary.energy_j is None
    assert summary.num_samples == 1


def test_summary_to_dict_is_json_ready() -> None:
    summary = TelemetrySummary.from_samples([make_sample(0.0, power_w=100)])

    decoded = json.loads(json.dumps(summary.to_dict()))

    assert decoded["peak_power_w"] == 100
    assert decoded["energy_j"] is None
    assert decoded["device"] == "nvidia"


# --- sampler ------------------------------------------------------------------


async def test_sampler_collects_in_the_background() -> None:
    source = ScriptedSource()

    async with Sampler(source, interval_s=0.01) as sampler:
        assert len(sampler.latest()) == 2  # start() samples once before returning
        while source.num_calls < 5:
            await asyncio.sleep(0.01)
    num_calls_at_stop = source.num_calls
    await asyncio.sleep(0.05)

    assert source.num_calls == num_calls_at_stop
    assert sampler.device == "nvidia"
    assert [s.index for s in sampler.latest()] == [1, 0]
    assert [s.num_samples for s in sampler.summary()] == [num_calls_at_stop] * 2


async def test_sampler_summary_per_device_since() -> None:
    source = ScriptedSource()
    # A long interval: each start() takes exactly one round, at t = 0, 1, 2, 3.
    sampler = Sampler(source, interval_s=60)
    for _ in range(4):
        await sampler.start()
        await sampler.stop()

    gpu0, gpu1 = sampler.summary(since_s=2.0)

    assert (gpu0.index, gpu1.index) == (0, 1)
    assert gpu0.num_samples == 2
    assert gpu0.mean_utilization_pct == pytest.approx(25.0)
    assert gpu1.energy_j == pytest.approx(101.0)  # 1 s at 101 W
    assert sampler.summary(since_s=10.0) == []


async def test_sampler_ring_buffer_is_bounded() -> None:
    sampler = Sampler(ScriptedSource(), interval_s=60, max_ticks=3)
    for _ in range(5):
        await sampler.start()
        await sampler.stop()

    assert [s.num_samples for s in sampler.summary()] == [3, 3]
    assert sampler.summary()[0].duration_s == 2.0  # rounds 2, 3, 4 remain


async def test_sampler_does_not_block_the_event_loop() -> None:
    source = ScriptedSource(delay_s=0.3)  # a slow, blocking driver call
    num_loop_turns = 0

    async def count_loop_turns() -> None:
        nonlocal num_loop_turns
        while True:
            await asyncio.sleep(0.01)
            num_loop_turns += 1

    counter = asyncio.create_task(count_loop_turns())
    sampler = Sampler(source, interval_s=60)
    await sampler.start()
    await sampler.stop()
    counter.cancel()

    assert num_loop_turns >= 5


async def test_sampler_survives_a_failing_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ScriptedSource()
    source.errors = [RuntimeError("GPU is lost"), RuntimeError("GPU is lost")]
    sampler = Sampler(source, interval_s=60)

    with caplog.at_level(logging.INFO, logger="server.sampler"):
        for _ in range(3):
            await sampler.start()
            await sampler.stop()

    assert len(sampler.latest()) == 2
    assert caplog.text.count("GPU is lost") == 1  # warned once, not per round
    assert "recovered" in caplog.text


async def test_sampler_logs_its_backend(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="server.sampler"):
        async with Sampler(PsutilSource(), interval_s=60) as sampler:
            assert sampler.device == "cpu"

    assert "telemetry sampler started: cpu" in caplog.text


async def test_sampler_refuses_a_second_start() -> None:
    async with Sampler(ScriptedSource(), interval_s=60) as sampler:
        with pytest.raises(RuntimeError, match="already running"):
            await sampler.start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 0}, "interval_s must be > 0, got 0"),
        ({"max_ticks": 0}, "max_ticks"),
    ],
)
def test_sampler_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sampler(ScriptedSource(), **kwargs)  # type: ignore[arg-type]
