"""What each cost lever would save, alone and pulled one after another.

The levers come in the order a careful team pulls them: first those that leave
every answer as it is, then those that change what the model reads, then who
answers, and last the one that changes the model itself.

1. Prefix cache: raise the share of prompt tokens read from cache (put the
   fixed part of each prompt first). Same answers. Cache writes are kept as
   they were, so providers that charge for writes may cost a little more.
2. Batch: move a share of the traffic that nobody waits on to the batch API
   (self-hosted: it runs in quiet hours, so it leaves the busiest hour).
   Same answers, later.
3. Shorter prompts: cut input tokens by a share (cached and written ones alike).
   Changes what the model reads: check quality first.
4. Routing: send a share of requests to a cheaper API model. Changes who
   answers: needs an evaluation and a router. API side only.
5. Quantization: serve the self-hosted model at int8/int4, with its capacity
   times a factor given by hand (--quantize-capacity-factor) or measured by
   `bench compare` (a variant's throughput ratio; see `quantized`), whose
   quality change the report shows beside the saving. Self-hosting only, and
   only after the quantize quality gate passes.

API costs here are list prices, also for a bill that states its own cost: a
lever changes tokens, and only list prices say what tokens cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from server.breakeven.answer import Answer, answer
from server.breakeven.api_cost import ApiPricer
from server.breakeven.capacity import Capacity
from server.breakeven.errors import BreakEvenError
from server.breakeven.hosting import FleetPolicy, Hardware, OpsOverhead
from server.breakeven.quantized import QuantizedVariant
from server.breakeven.usage import Bill, UsageLine


@dataclass(frozen=True)
class Levers:
    """The settings of the levers to try; None leaves a lever alone."""

    cache_hit_rate: float | None = None
    batch_share: float | None = None
    shorter_prompts: float | None = None
    route_share: float | None = None
    route_to: str | None = None
    quantize_capacity_factor: float | None = None
    quantize_precision: str = "int8/int4"
    # Instead of the factor by hand: a variant `bench compare` measured.
    quantized: QuantizedVariant | None = None

    def __post_init__(self) -> None:
        for flag, value in (
            ("--cache-hit-rate", self.cache_hit_rate),
            ("--batch-share", self.batch_share),
            ("--shorter-prompts", self.shorter_prompts),
            ("--route-share", self.route_share),
        ):
            if value is not None and not 0 <= value <= 1:
                raise BreakEvenError(
                    f"{flag} {value} must be a share from 0 to 1, e.g. 0.3"
                )
        if (self.route_share is None) != (self.route_to is None):
            raise BreakEvenError(
                "--route-share and --route-to go together: the share of requests and "
                "the cheaper model they go to, e.g. --route-share 0.3 --route-to "
                "openai/gpt-4o-mini"
            )
        if self.quantized is not None and self.quantize_capacity_factor is not None:
            raise BreakEvenError(
                f"--quantize-capacity-factor {self.quantize_capacity_factor:g} and a "
                f"measured factor ({self.quantized.source}) both given; keep one"
            )
        factor = self.quantize_capacity_factor
        if factor is not None and not factor > 0:
            raise BreakEvenError(
                f"--quantize-capacity-factor {factor} must be above 0: the quantized "
                "model's tokens/s over the original's (e.g. 1.6)"
            )

    @property
    def quantize_factor(self) -> float | None:
        """The quantized model's capacity over the original's, however given."""
        if self.quantized is not None:
            return self.quantized.capacity_factor
        return self.quantize_capacity_factor

    @property
    def quantize_factor_source(self) -> str:
        if self.quantized is not None:
            return self.quantized.source
        return "given by hand (--quantize-capacity-factor)"


@dataclass
class _State:
    """The traffic as the API sees it and as self-hosting sees it, and capacity."""

    api_lines: list[UsageLine]
    self_lines: list[UsageLine]
    capacity: Capacity | None


@dataclass(frozen=True)
class _Lever:
    name: str
    setting: str
    applies_to_api: bool
    applies_to_self: bool
    apply: Callable[[_State], _State]


@dataclass(frozen=True)
class Outcome:
    """The monthly costs after some levers are pulled."""

    lever: str
    setting: str
    api_monthly_usd: float | None
    self_hosted_monthly_usd: float | None
    break_even_monthly_tokens: float | None
    num_gpus: int | None


@dataclass
class WhatIf:
    baseline: Outcome
    alone: list[Outcome]
    combined: list[Outcome]
    notes: list[str]
    # The quantization lever's factor and where it came from, when it is pulled.
    quantize_factor: float | None = None
    quantize_factor_source: str | None = None
    quantized: QuantizedVariant | None = None


def what_if(
    bill: Bill,
    pricer: ApiPricer,
    levers: Levers,
    *,
    capacity: Capacity | None = None,
    hardware: Hardware | None = None,
    ops: OpsOverhead | None = None,
    fleet: FleetPolicy | None = None,
) -> WhatIf:
    """Each lever's saving alone, then all of them in order. Without capacity and
    hardware, only the API side is priced."""
    chosen = _levers(levers)
    if not chosen:
        raise BreakEvenError(
            "no lever to try; give at least one of --cache-hit-rate, --batch-share, "
            "--shorter-prompts, --route-share with --route-to, "
            "--quantize-capacity-factor, --quantized-from-compare, "
            "--quantized-from-history"
        )
    if levers.route_to is not None:
        pricer.check([levers.route_to])
    # Levers change tokens, so a bill's own costs no longer apply.
    lines = [dataclasses.replace(line, billed_cost_usd=None) for line in bill.lines]
    bill = bill.with_lines(lines)
    start = _State(lines, lines, capacity)

    def outcome(
        state: _State, name: str, setting: str, lever: _Lever | None
    ) -> Outcome:
        api_usd = pricer.price_bill(bill.with_lines(state.api_lines)).list_monthly_usd
        result = _self_hosted(bill, pricer, state, hardware, ops, fleet)
        applies_to_api = lever is None or lever.applies_to_api
        applies_to_self = lever is None or lever.applies_to_self
        return Outcome(
            name,
            setting,
            api_usd if applies_to_api else None,
            result.self_hosted.monthly_usd if result and applies_to_self else None,
            result.break_even.monthly_tokens if result else None,
            result.self_hosted.num_gpus if result and applies_to_self else None,
        )

    baseline = outcome(start, "today", "the bill as it is", None)
    alone = [
        outcome(lever.apply(start), lever.name, lever.setting, lever)
        for lever in chosen
    ]
    combined, state = [], start
    for lever in chosen:
        state = lever.apply(state)
        combined.append(outcome(state, f"+ {lever.name}", lever.setting, None))
    notes = sorted(pricer.notes)
    factor = levers.quantize_factor
    if capacity is None and factor is not None:
        notes.append("quantization changes only self-hosting, which needs capacity")
    if levers.quantized is not None:
        notes += levers.quantized.notes
    return WhatIf(
        baseline,
        alone,
        combined,
        notes,
        quantize_factor=factor,
        quantize_factor_source=None
        if factor is None
        else levers.quantize_factor_source,
        quantized=levers.quantized,
    )


def _self_hosted(
    bill: Bill,
    pricer: ApiPricer,
    state: _State,
    hardware: Hardware | None,
    ops: OpsOverhead | None,
    fleet: FleetPolicy | None,
) -> Answer | None:
    if state.capacity is None or hardware is None:
        return None
    api = pricer.price_bill(bill.with_lines(state.api_lines))
    return answer(
        bill.with_lines(state.self_lines),
        api,
        state.capacity,
        hardware,
        ops or OpsOverhead(),
        fleet or FleetPolicy(),
        candidate="",
    )


def _levers(levers: Levers) -> list[_Lever]:
    chosen = []
    if (rate := levers.cache_hit_rate) is not None:
        setting = f"{rate:.0%} of prompt tokens cached"
        change = _both(lambda line: [_cache(line, rate)])
        chosen.append(_Lever("prefix cache", setting, True, True, change))
    if (share := levers.batch_share) is not None:
        change = _both(lambda line: _to_batch(line, share))
        chosen.append(_Lever("batch", f"{share:.0%} of traffic", True, True, change))
    if (cut := levers.shorter_prompts) is not None:
        change = _both(lambda line: [line.scaled(1 - cut, prompt_only=True)])
        chosen.append(
            _Lever("shorter prompts", f"-{cut:.0%} input tokens", True, True, change)
        )
    if (routed := levers.route_share) is not None and levers.route_to is not None:
        setting = f"{routed:.0%} to {levers.route_to}"
        chosen.append(
            _Lever("routing", setting, True, False, _route(routed, levers.route_to))
        )
    if (factor := levers.quantize_factor) is not None:
        measured = levers.quantized
        precision = measured.label if measured else levers.quantize_precision
        setting = f"{precision}, capacity x{factor:g}"
        if measured is not None:
            # The quality change goes in the row of the saving it buys.
            setting = (
                f"{precision}, capacity x{factor:.2f} ({measured.model}; "
                f"{measured.quality_summary()})"
            )
        change = _quantize(factor, f"quantized to {precision}")
        chosen.append(_Lever("quantization", setting, False, True, change))
    return chosen


def _both(change: Callable[[UsageLine], list[UsageLine]]) -> Callable[[_State], _State]:
    def apply(state: _State) -> _State:
        return _State(
            [new for line in state.api_lines for new in change(line)],
            [new for line in state.self_lines for new in change(line)],
            state.capacity,
        )

    return apply


def _route(share: float, model: str) -> Callable[[_State], _State]:
    def apply(state: _State) -> _State:
        lines = []
        for line in state.api_lines:
            routed, kept = line.split(share)
            lines += [kept, dataclasses.replace(routed, model=model)]
        return _State(lines, state.self_lines, state.capacity)

    return apply


def _quantize(factor: float, why: str) -> Callable[[_State], _State]:
    def apply(state: _State) -> _State:
        capacity = state.capacity.scaled(factor, why) if state.capacity else None
        return _State(state.api_lines, state.self_lines, capacity)

    return apply


def _cache(line: UsageLine, hit_rate: float) -> UsageLine:
    cacheable = (
        line.num_prompt_tokens
        - line.num_cache_write_tokens
        - line.num_cache_write_1h_tokens
    )
    wanted = min(round(hit_rate * line.num_prompt_tokens), cacheable)
    # A lever never makes things worse: a higher hit rate already billed stays.
    return dataclasses.replace(
        line, num_cached_tokens=max(line.num_cached_tokens, wanted)
    )


def _to_batch(line: UsageLine, share: float) -> list[UsageLine]:
    if line.is_batch:
        return [line]
    moved, kept = line.split(share)
    return [kept, dataclasses.replace(moved, is_batch=True)]
