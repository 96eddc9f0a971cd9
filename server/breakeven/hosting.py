"""The self-hosted side's costs: rented or owned GPUs, and the people who run them.

The defaults, and where each comes from, are in `defaults.py`; every one in use
is listed next to the result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from server.breakeven.defaults import (
    DEFAULT_HEADROOM,
    DEFAULT_HOSTING_USD_PER_GPU_MONTH,
    DEFAULT_LIFETIME_MONTHS,
    DEFAULT_OPS_HOURS_PER_MONTH,
    DEFAULT_OPS_USD_PER_HOUR,
    DEFAULT_PEAK_TO_AVERAGE,
    DEFAULT_PUE,
    DEFAULT_USD_PER_KWH,
)
from server.breakeven.errors import BreakEvenError
from server.breakeven.usage import HOURS_PER_MONTH
from server.price_table import GpuPrice


@dataclass(frozen=True)
class RentedGpu:
    """GPUs rented by the hour, held all month."""

    name: str
    usd_per_gpu_hour: float
    source: str

    def __post_init__(self) -> None:
        _check_positive("--gpu-usd-per-hour", self.usd_per_gpu_hour)

    @classmethod
    def from_range(cls, name: str, price: GpuPrice) -> RentedGpu:
        """The midpoint of prices.yaml's on-demand range."""
        midpoint = (price.low_usd_per_hour + price.high_usd_per_hour) / 2
        return cls(
            name,
            midpoint,
            f"midpoint of {price.low_usd_per_hour:.2f}-{price.high_usd_per_hour:.2f} "
            f"$/GPU-h on-demand ({price.source}, as of {price.as_of})",
        )

    @property
    def usd_per_gpu_month(self) -> float:
        return self.usd_per_gpu_hour * HOURS_PER_MONTH

    @property
    def running_usd_per_gpu_month(self) -> float:
        """Cash out per GPU-month, not counting hardware already paid for."""
        return self.usd_per_gpu_month

    def upfront_usd(self, num_gpus: int) -> float:
        return 0.0

    def cost_parts_usd(self, num_gpus: int) -> dict[str, float]:
        return {"GPU rental": num_gpus * self.usd_per_gpu_month}

    def with_price_factor(self, factor: float) -> RentedGpu:
        return dataclasses.replace(
            self, usd_per_gpu_hour=self.usd_per_gpu_hour * factor
        )

    def assumptions(self) -> list[tuple[str, str, str]]:
        return [
            (
                "GPU rental",
                f"${self.usd_per_gpu_hour:.2f}/GPU-hour ({self.name}), "
                f"{HOURS_PER_MONTH:.0f} h a month",
                self.source,
            )
        ]


@dataclass(frozen=True)
class OwnedGpu:
    """GPUs bought, written off over their life, powered and hosted."""

    name: str
    purchase_usd: float
    power_w: float
    lifetime_months: float = DEFAULT_LIFETIME_MONTHS
    usd_per_kwh: float = DEFAULT_USD_PER_KWH
    pue: float = DEFAULT_PUE
    hosting_usd_per_gpu_month: float = DEFAULT_HOSTING_USD_PER_GPU_MONTH

    def __post_init__(self) -> None:
        _check_positive("--purchase-usd", self.purchase_usd)
        _check_positive("--lifetime-months", self.lifetime_months)
        _check_positive("--power-w", self.power_w)
        if self.usd_per_kwh < 0 or self.hosting_usd_per_gpu_month < 0:
            raise BreakEvenError(
                "--usd-per-kwh and --hosting-usd-per-gpu-month must be ≥ 0"
            )
        if self.pue < 1:
            raise BreakEvenError(
                f"--pue {self.pue} is below 1; power usage effectiveness is facility "
                "power over IT power, 1.0 at best (1.1-1.6 is typical)"
            )

    @property
    def amortization_usd_per_gpu_month(self) -> float:
        return self.purchase_usd / self.lifetime_months

    @property
    def power_usd_per_gpu_month(self) -> float:
        return self.power_w / 1000 * HOURS_PER_MONTH * self.usd_per_kwh * self.pue

    @property
    def running_usd_per_gpu_month(self) -> float:
        """Cash out per GPU-month once the GPU is paid for: power and hosting."""
        return self.power_usd_per_gpu_month + self.hosting_usd_per_gpu_month

    @property
    def usd_per_gpu_month(self) -> float:
        return self.amortization_usd_per_gpu_month + self.running_usd_per_gpu_month

    def upfront_usd(self, num_gpus: int) -> float:
        return num_gpus * self.purchase_usd

    def cost_parts_usd(self, num_gpus: int) -> dict[str, float]:
        return {
            "hardware, amortized": num_gpus * self.amortization_usd_per_gpu_month,
            "power": num_gpus * self.power_usd_per_gpu_month,
            "hosting": num_gpus * self.hosting_usd_per_gpu_month,
        }

    def with_price_factor(self, factor: float) -> OwnedGpu:
        return dataclasses.replace(self, purchase_usd=self.purchase_usd * factor)

    def assumptions(self) -> list[tuple[str, str, str]]:
        return [
            (
                "GPU purchase",
                f"${self.purchase_usd:,.0f} per GPU ({self.name}) over "
                f"{self.lifetime_months:g} months",
                "given (--purchase-usd); include the server's share per GPU",
            ),
            (
                "power",
                f"{self.power_w:g} W x ${self.usd_per_kwh:.3f}/kWh x PUE {self.pue:g} "
                f"= ${self.power_usd_per_gpu_month:,.0f}/GPU-month",
                "board power all month; rates given or defaults (see defaults.py)",
            ),
            (
                "hosting",
                f"${self.hosting_usd_per_gpu_month:,.0f}/GPU-month",
                "colocation space, network, remote hands; default is a placeholder",
            ),
        ]


Hardware = RentedGpu | OwnedGpu


@dataclass(frozen=True)
class OpsOverhead:
    """People's time: engineer-hours a month at a rate, or a share of hardware."""

    hours_per_month: float = DEFAULT_OPS_HOURS_PER_MONTH
    usd_per_hour: float = DEFAULT_OPS_USD_PER_HOUR
    # When set, overhead is this share of the hardware cost instead of hours.
    multiplier: float | None = None

    def __post_init__(self) -> None:
        if min(self.hours_per_month, self.usd_per_hour, self.multiplier or 0) < 0:
            raise BreakEvenError("operations overhead must not be negative")

    @property
    def fixed_usd_per_month(self) -> float:
        return (
            0.0
            if self.multiplier is not None
            else self.hours_per_month * self.usd_per_hour
        )

    @property
    def share_of_hardware(self) -> float:
        return self.multiplier or 0.0

    def monthly_usd(self, hardware_usd: float) -> float:
        return self.fixed_usd_per_month + self.share_of_hardware * hardware_usd

    def scaled(self, factor: float) -> OpsOverhead:
        if self.multiplier is not None:
            return dataclasses.replace(self, multiplier=self.multiplier * factor)
        return dataclasses.replace(self, hours_per_month=self.hours_per_month * factor)

    def assumption(self) -> tuple[str, str, str]:
        if self.multiplier is not None:
            value = f"{self.multiplier:.0%} of the hardware cost"
        else:
            value = (
                f"{self.hours_per_month:g} engineer-hours/month x "
                f"${self.usd_per_hour:g}/h = ${self.fixed_usd_per_month:,.0f}/month"
            )
        why = "upgrades, monitoring, on-call, capacity planning (see defaults.py)"
        if self.multiplier == 0 or (
            self.multiplier is None and not self.fixed_usd_per_month
        ):
            why = "set to zero by hand: self-hosting is rarely run by nobody"
        return ("operations overhead", value, why)


@dataclass(frozen=True)
class FleetPolicy:
    """How GPUs are counted: the load's shape and how full a GPU may run."""

    peak_to_average: float = DEFAULT_PEAK_TO_AVERAGE
    peak_source: str = "assumed"
    # The share of measured capacity a GPU is planned to run at in the busiest
    # hour: bursts within the hour and a slow request must not break the SLO.
    headroom: float = DEFAULT_HEADROOM
    gpus_per_replica: int = 1
    min_replicas: int = 1

    def __post_init__(self) -> None:
        if self.peak_to_average < 1:
            raise BreakEvenError(
                f"--peak-to-average {self.peak_to_average} is below 1; it is the "
                "busiest hour's load over the mean hour's, so 1 or more"
            )
        if not 0 < self.headroom <= 1:
            raise BreakEvenError(
                f"--headroom {self.headroom} must be above 0 and at most 1, the share "
                "of measured capacity a GPU may run at in the busiest hour"
            )
        if self.gpus_per_replica < 1 or self.min_replicas < 1:
            raise BreakEvenError("--gpus-per-replica and --min-replicas must be ≥ 1")

    def num_gpus(self, busy_gpus: float) -> int:
        """GPUs to hold so that `busy_gpus` of work fits at the headroom."""
        # The epsilon keeps 2.0000000001 replicas from becoming 3.
        replicas = math.ceil(busy_gpus / (self.headroom * self.gpus_per_replica) - 1e-9)
        return max(replicas, self.min_replicas) * self.gpus_per_replica


def _check_positive(flag: str, value: float) -> None:
    if not value > 0:
        raise BreakEvenError(f"{flag} {value} must be above 0")
