"""Device telemetry: per-GPU readings through NVML, or CPU and RAM through psutil.

Shared by the gateway (gauges) and the benchmark tool (summaries during a run). Both
backends fill the same `DeviceSample`, and a reading the hardware cannot give is None.
"""

import contextlib
import dataclasses
import importlib
import logging
import platform
import time
from types import ModuleType
from typing import Any, Protocol

import psutil

logger = logging.getLogger(__name__)


class TelemetryUnavailableError(RuntimeError):
    """The requested telemetry backend cannot be used on this machine."""


@dataclasses.dataclass(frozen=True)
class DeviceSample:
    """One reading of one device; `device` is "nvidia" or "cpu"."""

    timestamp_s: float  # Unix time
    device: str
    index: int
    name: str
    utilization_pct: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    power_w: float | None
    energy_j: float | None  # cumulative counter; only differences mean anything
    temperature_c: float | None
    sm_clock_mhz: float | None  # the CPU clock on the psutil backend


class TelemetrySource(Protocol):
    device: str

    def sample(self) -> list[DeviceSample]: ...

    def close(self) -> None: ...


def _import_nvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise TelemetryUnavailableError(
            "NVML is unavailable: nvidia-ml-py is not installed "
            "(pip install nvidia-ml-py)"
        ) from exc


class NvmlSource:
    """Per-GPU readings from NVML; `nvml` defaults to the `pynvml` module."""

    device = "nvidia"

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml = nvml if nvml is not None else _import_nvml()
        try:
            nvml.nvmlInit()
            num_gpus = nvml.nvmlDeviceGetCount()
            self._handles = [
                nvml.nvmlDeviceGetHandleByIndex(i) for i in range(num_gpus)
            ]
            self._names = [str(nvml.nvmlDeviceGetName(h)) for h in self._handles]
        except nvml.NVMLError as exc:
            with contextlib.suppress(nvml.NVMLError):  # when nvmlInit itself failed
                nvml.nvmlShutdown()
            raise TelemetryUnavailableError(f"NVML is unavailable: {exc}") from exc
        if not self._handles:
            nvml.nvmlShutdown()
            raise TelemetryUnavailableError("NVML is unavailable: it reports 0 GPUs")
        self._is_open = True

        # Energy needs Volta or newer, and old drivers lack some entry points
        # altogether; both mean "no reading", not an error.
        self._unsupported: tuple[type[Exception], ...] = tuple(
            getattr(nvml, name)
            for name in ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
            if hasattr(nvml, name)
        )

    def sample(self) -> list[DeviceSample]:
        now_s = time.time()
        return [
            self._sample_gpu(i, handle, now_s) for i, handle in enumerate(self._handles)
        ]

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._nvml.nvmlShutdown()

    def _read(self, getter: Any, *args: Any) -> Any:
        try:
            return getter(*args)
        except self._unsupported:
            return None

    def _sample_gpu(self, index: int, handle: Any, now_s: float) -> DeviceSample:
        nvml = self._nvml
        utilization = self._read(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._read(nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = self._read(nvml.nvmlDeviceGetPowerUsage, handle)
        energy_mj = self._read(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        temperature_c = self._read(
            nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        )
        sm_clock_mhz = self._read(
            nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM
        )
        return DeviceSample(
            timestamp_s=now_s,
            device=self.device,
            index=index,
            name=self._names[index],
            utilization_pct=None if utilization is None else float(utilization.gpu),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            power_w=None if power_mw is None else power_mw / 1000,
            energy_j=None if energy_mj is None else energy_mj / 1000,
            temperature_c=None if temperature_c is None else float(temperature_c),
            sm_clock_mhz=None if sm_clock_mhz is None else float(sm_clock_mhz),
        )


class PsutilSource:
    """The whole CPU and system RAM as one device, for machines without a GPU."""

    device = "cpu"

    def __init__(self) -> None:
        self._name = _cpu_name()
        self._last_busy_total_s = _cpu_busy_total_s()

    def sample(self) -> list[DeviceSample]:
        memory = psutil.virtual_memory()
        return [
            DeviceSample(
                timestamp_s=time.time(),
                device=self.device,
                index=0,
                name=self._name,
                utilization_pct=self._cpu_utilization_pct(),
                # `used` excludes different things per OS; total - available is
                # what other processes cannot have, which is what we want to meter.
                memory_used_bytes=memory.total - memory.available,
                memory_total_bytes=memory.total,
                power_w=None,
                energy_j=None,
                temperature_c=_cpu_temperature_c(),
                sm_clock_mhz=_cpu_clock_mhz(),
            )
        ]

    def close(self) -> None:
        pass

    def _cpu_utilization_pct(self) -> float | None:
        # psutil.cpu_percent() keeps its baseline per calling thread, and the Sampler
        # runs on whichever pool thread is free, so we keep our own baseline.
        busy_s, total_s = _cpu_busy_total_s()
        last_busy_s, last_total_s = self._last_busy_total_s
        self._last_busy_total_s = (busy_s, total_s)
        if total_s <= last_total_s:
            return None  # called twice within one clock tick
        busy_pct = 100 * (busy_s - last_busy_s) / (total_s - last_total_s)
        return min(100.0, max(0.0, busy_pct))


def _cpu_busy_total_s() -> tuple[float, float]:
    times = psutil.cpu_times()
    # Linux counts guest time inside user time already; iowait is idle waiting.
    total_s = (
        sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    )
    idle_s = times.idle + getattr(times, "iowait", 0.0)
    return total_s - idle_s, total_s


def _cpu_name() -> str:
    # platform.processor() is empty on most Linux builds; /proc/cpuinfo names the model.
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def _cpu_temperature_c() -> float | None:
    read_sensors = getattr(psutil, "sensors_temperatures", None)  # Linux, FreeBSD
    sensors = read_sensors() if read_sensors is not None else {}
    for chip in ("coretemp", "k10temp", "zenpower", "cpu_thermal"):
        if sensors.get(chip):
            return float(max(entry.current for entry in sensors[chip]))
    return None


def _cpu_clock_mhz() -> float | None:
    try:
        frequency = psutil.cpu_freq()
    except (NotImplementedError, OSError):  # no cpufreq in some VMs and containers
        return None
    # Some ARM VMs report 0 MHz, which means unknown rather than stopped.
    return float(frequency.current) if frequency and frequency.current > 0 else None


def open_source(prefer: str = "auto") -> TelemetrySource:
    """NVML when it works, else psutil; prefer="nvml" or "cpu" forces one."""
    if prefer not in ("auto", "nvml", "cpu"):
        raise ValueError(
            f"telemetry prefer={prefer!r} is unknown; use 'auto', 'nvml' or 'cpu'"
        )
    if prefer == "cpu":
        return PsutilSource()

    try:
        return NvmlSource()
    except TelemetryUnavailableError as exc:
        if prefer == "nvml":
            raise TelemetryUnavailableError(
                f"telemetry prefer='nvml', but {exc}; check the driver with "
                "nvidia-smi, or use prefer='auto' to fall back to CPU telemetry"
            ) from exc
        logger.info("telemetry: %s; reading CPU and RAM through psutil", exc)
        return PsutilSource()
