"""The answer: the API against self-hosting at the bill's volume, and where they cross.

Load is counted in GPU-seconds: each bill line's tokens at the capacity's rates.
The average over the month sets the GPUs a perfectly autoscaled fleet would
need; the busiest hour (average x peak-to-average, batch traffic left out since
it can wait for quiet hours) sets the fleet one actually holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.breakeven.api_cost import ApiCost
from server.breakeven.capacity import Capacity
from server.breakeven.cost_curve import BreakEvenVolume, CostCurve
from server.breakeven.defaults import DEFAULT_HEADROOM
from server.breakeven.errors import BreakEvenError
from server.breakeven.hosting import (
    FleetPolicy,
    Hardware,
    OpsOverhead,
    OwnedGpu,
)
from server.breakeven.usage import S_PER_MONTH, Bill

Assumption = tuple[str, str, str]  # what, value, where it comes from
_MTOK = 1_000_000


@dataclass(frozen=True)
class SuccessRates:
    """The share of requests whose answer was good enough, on each side."""

    api: float | None = None
    self_hosted: float | None = None
    api_source: str = "unknown"
    self_hosted_source: str = "unknown"

    def __post_init__(self) -> None:
        for rate in (self.api, self.self_hosted):
            if rate is not None and not 0 < rate <= 1:
                raise BreakEvenError(
                    f"success rate {rate} must be above 0 and at most 1"
                )


@dataclass(frozen=True)
class SelfHostedCost:
    num_gpus: int
    parts_usd: dict[str, float]

    @property
    def monthly_usd(self) -> float:
        return sum(self.parts_usd.values())


@dataclass
class Answer:
    """Everything the report shows, with the inputs it came from."""

    bill: Bill
    api: ApiCost
    capacity: Capacity
    hardware: Hardware
    ops: OpsOverhead
    fleet: FleetPolicy
    candidate: str
    success: SuccessRates
    monthly_prompt_tokens: float
    monthly_cached_tokens: float
    monthly_output_tokens: float
    monthly_requests: float | None
    busy_gpus_average: float
    busy_gpus_peak: float
    self_hosted: SelfHostedCost
    # Rented only: the floor a perfectly autoscaled fleet would reach.
    self_hosted_autoscaled: SelfHostedCost | None
    curve: CostCurve
    break_even: BreakEvenVolume
    payback_months: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def monthly_tokens(self) -> float:
        return self.monthly_prompt_tokens + self.monthly_output_tokens

    @property
    def api_monthly_usd(self) -> float:
        return self.api.monthly_usd

    @property
    def savings_monthly_usd(self) -> float:
        """Positive when self-hosting is cheaper."""
        return self.api_monthly_usd - self.self_hosted.monthly_usd

    @property
    def utilization(self) -> float:
        """The fleet's average busy share of its measured capacity."""
        return self.busy_gpus_average / self.self_hosted.num_gpus

    @property
    def api_usd_per_mtok(self) -> float:
        return self.api_monthly_usd / self.monthly_tokens * _MTOK

    @property
    def self_hosted_usd_per_mtok(self) -> float:
        return self.self_hosted.monthly_usd / self.monthly_tokens * _MTOK

    @property
    def self_hosted_usd_per_mtok_full(self) -> float:
        """Per million tokens on GPUs filled to the headroom, overhead spread out."""
        return self.curve.usd_per_gpu_month / self.curve.tokens_per_gpu_month * _MTOK

    def usd_per_request(
        self, monthly_usd: float, success_rate: float | None
    ) -> float | None:
        if not self.monthly_requests:
            return None
        return monthly_usd / (self.monthly_requests * (success_rate or 1.0))

    def assumptions(self) -> list[Assumption]:
        bill = self.bill
        period = f"{bill.num_months:.2f} months"
        if bill.start and bill.end:
            period += f" ({bill.start:%Y-%m-%d} to {bill.end:%Y-%m-%d})"
        api_basis = (
            "the bill's own cost_usd"
            if self.api.billed_monthly_usd is not None
            else "list prices from prices.yaml (see notes)"
        )
        found: list[Assumption] = [
            ("bill", f"{bill.format}: {bill.source}", f"covers {period}"),
            ("API cost", f"${self.api_monthly_usd:,.2f}/month", api_basis),
            (
                "self-hosted candidate",
                self.candidate,
                "given (--candidate or --capacity-model)",
            ),
            ("capacity", _capacity_value(self.capacity), self.capacity.source),
            (
                "prefix cache",
                f"self-hosting hits it as often as the API did "
                f"({_share(self.monthly_cached_tokens, self.monthly_prompt_tokens)} "
                "of prompt tokens)",
                f"a hit costs {self.capacity.cached_prompt_work:.0%} of a prompt "
                "token's work",
            ),
            *self.hardware.assumptions(),
            self.ops.assumption(),
            (
                "peak-to-average",
                f"{self.fleet.peak_to_average:.2f}",
                self.fleet.peak_source,
            ),
            (
                "headroom",
                f"a GPU runs at most {self.fleet.headroom:.0%} of its capacity in the "
                "busiest hour",
                "default: room for bursts within the hour"
                if self.fleet.headroom == DEFAULT_HEADROOM
                else "given (--headroom)",
            ),
            (
                "fleet",
                f"{self.fleet.gpus_per_replica} GPU(s) per replica, at least "
                f"{self.fleet.min_replicas} replica(s), held all month",
                "given or default",
            ),
        ]
        for side, rate, source in (
            ("API", self.success.api, self.success.api_source),
            ("self-hosted", self.success.self_hosted, self.success.self_hosted_source),
        ):
            value = "unknown" if rate is None else f"{rate:.1%}"
            found.append((f"success rate, {side}", value, source))
        return found


def answer(
    bill: Bill,
    api: ApiCost,
    capacity: Capacity,
    hardware: Hardware,
    ops: OpsOverhead,
    fleet: FleetPolicy,
    candidate: str,
    success: SuccessRates | None = None,
) -> Answer:
    """Compare the bill's API cost with serving the same tokens on `hardware`."""
    monthly_tokens = bill.monthly(sum(line.num_tokens for line in bill.lines))
    if monthly_tokens <= 0:
        raise BreakEvenError(f"{bill.source}: the bill has no tokens to compare")

    # Load: GPU-seconds, on average and in the busiest hour.
    gpu_s = bill.monthly(sum(capacity.gpu_s(line) for line in bill.lines))
    interactive_gpu_s = bill.monthly(
        sum(capacity.gpu_s(line) for line in bill.lines if not line.is_batch)
    )
    busy_average = gpu_s / S_PER_MONTH
    busy_peak = max(
        busy_average, fleet.peak_to_average * interactive_gpu_s / S_PER_MONTH
    )

    # Cost: the fleet for the peak, held all month.
    curve = CostCurve(
        api_usd_per_token=api.monthly_usd / monthly_tokens,
        peak_busy_gpus_per_token=busy_peak / monthly_tokens,
        fleet=fleet,
        usd_per_gpu_month=hardware.usd_per_gpu_month * (1 + ops.share_of_hardware),
        fixed_usd_per_month=ops.fixed_usd_per_month,
    )
    self_hosted = _fleet_cost(fleet.num_gpus(busy_peak), hardware, ops)
    autoscaled = None
    if not isinstance(hardware, OwnedGpu):
        autoscaled = _fleet_cost(fleet.num_gpus(busy_average), hardware, ops)

    warnings = [*capacity.notes, *bill.notes, *api.notes]
    output_share = (
        bill.monthly(sum(x.num_output_tokens for x in bill.lines)) / monthly_tokens
    )
    if mix := capacity.mix_warning(output_share):
        warnings.append(mix)
    return Answer(
        bill=bill,
        api=api,
        capacity=capacity,
        hardware=hardware,
        ops=ops,
        fleet=fleet,
        candidate=candidate,
        success=success or SuccessRates(),
        monthly_prompt_tokens=bill.monthly(
            sum(x.num_prompt_tokens for x in bill.lines)
        ),
        monthly_cached_tokens=bill.monthly(
            sum(x.num_cached_tokens for x in bill.lines)
        ),
        monthly_output_tokens=bill.monthly(
            sum(x.num_output_tokens for x in bill.lines)
        ),
        monthly_requests=None
        if bill.num_requests is None
        else bill.monthly(bill.num_requests),
        busy_gpus_average=busy_average,
        busy_gpus_peak=busy_peak,
        self_hosted=self_hosted,
        self_hosted_autoscaled=autoscaled,
        curve=curve,
        break_even=curve.break_even(),
        payback_months=_payback_months(api.monthly_usd, self_hosted, hardware, ops),
        warnings=warnings,
    )


def _fleet_cost(num_gpus: int, hardware: Hardware, ops: OpsOverhead) -> SelfHostedCost:
    parts = hardware.cost_parts_usd(num_gpus)
    parts["operations"] = ops.monthly_usd(sum(parts.values()))
    return SelfHostedCost(num_gpus, parts)


def _payback_months(
    api_monthly_usd: float, cost: SelfHostedCost, hardware: Hardware, ops: OpsOverhead
) -> float | None:
    """Months until the purchase is earned back by paying less than the API."""
    upfront_usd = hardware.upfront_usd(cost.num_gpus)
    if not upfront_usd:
        return None
    running_usd = cost.num_gpus * hardware.running_usd_per_gpu_month
    cash_out_usd = running_usd + cost.parts_usd["operations"]
    saved_usd = api_monthly_usd - cash_out_usd
    return upfront_usd / saved_usd if saved_usd > 0 else None


def _capacity_value(capacity: Capacity) -> str:
    if capacity.is_blended:
        return f"{capacity.prompt_tokens_per_s:,.0f} tokens/s per GPU (prompt + output)"
    return (
        f"{capacity.prompt_tokens_per_s:,.0f} prompt and "
        f"{capacity.output_tokens_per_s:,.0f} output tokens/s per GPU"
    )


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "0%"
