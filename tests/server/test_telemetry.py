import logging
import sys
import time
import types

import psutil
import pytest

from server.telemetry import (
    NvmlSource,
    PsutilSource,
    TelemetryUnavailableError,
    open_source,
)

H200_MEMORY_TOTAL_BYTES = 150_754_820_096


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class FakeNvml(types.ModuleType):
    """Just enough of pynvml: same function names, units and error classes."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1

    def __init__(
        self,
        num_gpus: int = 2,
        init_error: Exception | None = None,
        failing: dict[str, Exception] | None = None,
    ) -> None:
        super().__init__("pynvml")
        self.num_gpus = num_gpus
        self.init_error = init_error
        self.failing = failing or {}
        self.num_shutdowns = 0
        self.energy_mj = 1_234_567_890

    def _call(self, name: str) -> None:
        if name in self.failing:
            raise self.failing[name]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.num_shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.num_gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return 100 + index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return f"NVIDIA H200 #{handle - 100}"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> types.SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates")
        return types.SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        used = 80_000_000_000 + handle
        return types.SimpleNamespace(
            total=H200_MEMORY_TOTAL_BYTES,
            used=used,
            free=H200_MEMORY_TOTAL_BYTES - used,
        )

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return 312_500

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        self._call("nvmlDeviceGetTotalEnergyConsumption")
        return self.energy_mj

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        self._call("nvmlDeviceGetTemperature")
        return 61

    def nvmlDeviceGetClockInfo(self, handle: int, clock_type: int) -> int:
        assert clock_type == self.NVML_CLOCK_SM
        self._call("nvmlDeviceGetClockInfo")
        return 1980


# --- NVML source --------------------------------------------------------------


def test_nvml_source_maps_units() -> None:
    source = NvmlSource(FakeNvml(num_gpus=2))

    samples = source.sample()

    assert [s.index for s in samples] == [0, 1]
    first = samples[0]
    assert first.device == "nvidia"
    assert first.name == "NVIDIA H200 #0"
    assert first.utilization_pct == 87.0
    assert first.memory_used_bytes == 80_000_000_100
    assert first.memory_total_bytes == H200_MEMORY_TOTAL_BYTES
    assert first.power_w == pytest.approx(312.5)  # from 312_500 mW
    assert first.energy_j == pytest.approx(1_234_567.89)  # from mJ
    assert first.temperature_c == 61.0
    assert first.sm_clock_mhz == 1980.0
    assert first.timestamp_s == pytest.approx(time.time(), abs=5)


def test_nvml_unsupported_fields_are_none() -> None:
    unsupported = NVMLError_NotSupported()
    nvml = FakeNvml(
        failing={
            "nvmlDeviceGetTotalEnergyConsumption": unsupported,
            "nvmlDeviceGetPowerUsage": unsupported,
            "nvmlDeviceGetMemoryInfo": unsupported,
        }
    )

    sample = NvmlSource(nvml).sample()[0]

    assert sample.energy_j is None
    assert sample.power_w is None
    assert sample.memory_used_bytes is None
    assert sample.memory_total_bytes is None
    assert sample.utilization_pct == 87.0


def test_nvml_other_errors_are_not_hidden() -> None:
    nvml = FakeNvml(failing={"nvmlDeviceGetPowerUsage": NVMLError("GPU is lost")})

    with pytest.raises(NVMLError, match="GPU is lost"):
        NvmlSource(nvml).sample()


def test_nvml_close_shuts_down_once() -> None:
    nvml = FakeNvml()
    source = NvmlSource(nvml)

    source.close()
    source.close()

    assert nvml.num_shutdowns == 1


# --- choosing a backend -------------------------------------------------------


def test_open_source_prefers_nvml_when_it_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())

    source = open_source()

    assert isinstance(source, NvmlSource)
    assert source.device == "nvidia"


@pytest.mark.parametrize(
    "nvml",
    [
        None,  # importing it raises ImportError
        FakeNvml(init_error=NVMLError("Driver Not Loaded")),
        FakeNvml(num_gpus=0),
    ],
    ids=["not-installed", "driver-not-loaded", "no-gpus"],
)
def test_open_source_falls_back_to_psutil(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    nvml: FakeNvml | None,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    with caplog.at_level(logging.INFO, logger="server.telemetry"):
        source = open_source()

    assert isinstance(source, PsutilSource)
    assert source.device == "cpu"
    assert "NVML is unavailable" in caplog.text
    if nvml is not None and nvml.num_gpus == 0:
        assert nvml.num_shutdowns == 1


def test_open_source_nvml_required_errors_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNvml(init_error=NVMLError("Driver Not Loaded"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    with pytest.raises(
        TelemetryUnavailableError, match=r"Driver Not Loaded.*nvidia-smi"
    ):
        open_source(prefer="nvml")


def test_open_source_cpu_forces_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())

    assert isinstance(open_source(prefer="cpu"), PsutilSource)


def test_open_source_rejects_unknown_preference() -> None:
    with pytest.raises(ValueError, match=r"'gpu'.*'auto', 'nvml' or 'cpu'"):
        open_source(prefer="gpu")


# --- psutil source ------------------------------------------------------------


def test_psutil_source_reports_this_machine() -> None:
    source = PsutilSource()
    time.sleep(0.2)  # let the CPU-time counters advance past the baseline

    [sample] = source.sample()

    assert sample.device == "cpu"
    assert sample.index == 0
    assert sample.name
    assert sample.utilization_pct is not None
    assert 0.0 <= sample.utilization_pct <= 100.0
    assert sample.memory_total_bytes == psutil.virtual_memory().total
    assert sample.memory_used_bytes is not None
    assert 0 < sample.memory_used_bytes <= sample.memory_total_bytes
    assert sample.power_w is None
    assert sample.energy_j is None
    assert sample.sm_clock_mhz is None or sample.sm_clock_mhz > 0
