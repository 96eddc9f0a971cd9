"""How the answer moves with the three numbers it is most sensitive to.

Utilization is the fleet's average busy share of its measured capacity (the
GPUs are sized to reach it, so a low utilization means a spiky load or a
generous SLO); GPU price is the rental rate, or the purchase price of owned
GPUs; overhead is the operations estimate times a factor, since teams
underestimate it several-fold. Each cell is the monthly saving of
self-hosting against the API at the bill's volume: negative means the API is
cheaper.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from server.breakeven.answer import Answer
from server.breakeven.hosting import OwnedGpu
from server.price_table import GpuPrice

UTILIZATIONS = (0.2, 0.4, 0.6, 0.8)
OVERHEAD_FACTORS = (0.5, 1.0, 2.0, 4.0)
PRICE_FACTORS = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class SensitivityRow:
    overhead_factor: float
    # Utilizations that need the same fleet share one row: lowest and highest.
    utilization: float
    utilization_high: float
    num_gpus: int
    savings_usd: list[float]


@dataclass(frozen=True)
class Sensitivity:
    api_monthly_usd: float
    price_labels: list[str]
    rows: list[SensitivityRow]


def sensitivity(answer: Answer, gpu_range: GpuPrice | None = None) -> Sensitivity:
    """Savings over utilization x GPU price x overhead, at the bill's volume."""
    hardware = answer.hardware
    points = _price_points(answer, gpu_range)
    rows: list[SensitivityRow] = []
    for overhead_factor in OVERHEAD_FACTORS:
        ops = answer.ops.scaled(overhead_factor)
        for utilization in UTILIZATIONS:
            fleet = dataclasses.replace(answer.fleet, headroom=utilization)
            num_gpus = fleet.num_gpus(answer.busy_gpus_average)
            previous = rows[-1] if rows else None
            if (
                previous is not None
                and previous.overhead_factor == overhead_factor
                and previous.num_gpus == num_gpus
            ):
                rows[-1] = dataclasses.replace(previous, utilization_high=utilization)
                continue
            savings = []
            for _, factor in points:
                priced = hardware.with_price_factor(factor)
                hardware_usd = num_gpus * priced.usd_per_gpu_month
                cost_usd = hardware_usd + ops.monthly_usd(hardware_usd)
                savings.append(answer.api_monthly_usd - cost_usd)
            rows.append(
                SensitivityRow(
                    overhead_factor, utilization, utilization, num_gpus, savings
                )
            )
    return Sensitivity(answer.api_monthly_usd, [label for label, _ in points], rows)


def _price_points(
    answer: Answer, gpu_range: GpuPrice | None
) -> list[tuple[str, float]]:
    hardware = answer.hardware
    if isinstance(hardware, OwnedGpu):
        return [
            (f"${hardware.purchase_usd * f:,.0f}/GPU bought", f) for f in PRICE_FACTORS
        ]
    rates = [hardware.usd_per_gpu_hour * f for f in PRICE_FACTORS]
    if gpu_range is not None:
        rates = sorted(
            {
                gpu_range.low_usd_per_hour,
                hardware.usd_per_gpu_hour,
                gpu_range.high_usd_per_hour,
            }
        )
    return [(f"${rate:.2f}/GPU-h", rate / hardware.usd_per_gpu_hour) for rate in rates]
