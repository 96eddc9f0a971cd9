"""The levers on a hand-computed bill, alone and one after another."""

from __future__ import annotations

import pytest

from server.breakeven.api_cost import ApiPricer
from server.breakeven.capacity import Capacity
from server.breakeven.errors import BreakEvenError
from server.breakeven.hosting import FleetPolicy, RentedGpu
from server.breakeven.usage import UsageLine
from server.breakeven.whatif import Levers, what_if
from server.price_table import PriceTable
from tests.server.breakeven.conftest import month_bill

# 1,000M prompt tokens (200M cached) and 100M output on testco/big:
# 800 x $2 + 200 x $0.5 + 100 x $8 = $1,600 + $100 + $800 = $2,500 a month.
LINE = UsageLine(
    "testco/big",
    num_prompt_tokens=1_000_000_000,
    num_cached_tokens=200_000_000,
    num_output_tokens=100_000_000,
)
LEVERS = Levers(
    cache_hit_rate=0.5,
    batch_share=0.2,
    shorter_prompts=0.1,
    route_share=0.5,
    route_to="testco/small",
)


def test_each_lever_alone(prices: PriceTable) -> None:
    result = what_if(month_bill(LINE), ApiPricer(prices), LEVERS)
    api = {o.lever: o.api_monthly_usd for o in result.alone}

    assert result.baseline.api_monthly_usd == pytest.approx(2_500)
    # Cache: 500M cached, 500M not: 500 x $2 + 500 x $0.5 + $800 = $2,050.
    assert api["prefix cache"] == pytest.approx(2_050)
    # Batch: 80% as it was, 20% at half price: $2,000 + $250.
    assert api["batch"] == pytest.approx(2_250)
    # Prompts -10%: 720M plain, 180M cached: $1,440 + $90 + $800 = $2,330.
    assert api["shorter prompts"] == pytest.approx(2_330)
    # Half to testco/small: $1,250 + (400 x 0.2 + 100 x 0.05 + 50 x 0.8) = $1,375.
    assert api["routing"] == pytest.approx(1_375)
    assert [o.lever for o in result.alone] == [
        "prefix cache",
        "batch",
        "shorter prompts",
        "routing",
    ]


def test_levers_in_order(prices: PriceTable) -> None:
    result = what_if(month_bill(LINE), ApiPricer(prices), LEVERS)
    api = [o.api_monthly_usd for o in result.combined]

    # + cache: $2,050.
    # + batch: $2,050 x 0.8 + $2,050 x 0.2 x 0.5 = $1,640 + $205 = $1,845.
    # + prompts -10%: a full-price line is now 450 x $2 + 450 x $0.5 + $800 =
    #   $1,925: $1,925 x 0.8 + $1,925 x 0.1 = $1,732.50.
    # + half to testco/small, whose full-price line is 450 x 0.2 + 450 x 0.05 +
    #   100 x 0.8 = $192.50, so $173.25 with 20% at half price:
    #   $1,732.50 / 2 + $173.25 / 2 = $952.875.
    assert api == pytest.approx([2_050, 1_845, 1_732.5, 952.875])


def test_quantization_changes_only_self_hosting(prices: PriceTable) -> None:
    # 1 prompt / 0.1 output tokens/s per GPU: 800M / 1 + 100M / 0.1 = 1,800M s,
    # 684.9 GPUs busy; x1 peak at 100% headroom: 685 GPUs. Twice the capacity
    # halves the busy GPUs: 342.5, so 343.
    levers = Levers(quantize_capacity_factor=2.0, quantize_precision="int4")
    result = what_if(
        month_bill(LINE),
        ApiPricer(prices),
        levers,
        capacity=Capacity(1.0, 0.1, "test"),
        hardware=RentedGpu("testgpu", 1.0, "test"),
        fleet=FleetPolicy(peak_to_average=1.0, headroom=1.0),
    )

    assert result.baseline.num_gpus == 685
    quantized = result.alone[0]
    assert quantized.api_monthly_usd is None
    assert quantized.num_gpus == 343
    # 342 GPUs fewer at $730 each.
    assert quantized.self_hosted_monthly_usd is not None
    assert result.baseline.self_hosted_monthly_usd == pytest.approx(
        quantized.self_hosted_monthly_usd + 342 * 730
    )


def test_routing_leaves_self_hosting_alone(prices: PriceTable) -> None:
    levers = Levers(route_share=0.5, route_to="testco/small")
    result = what_if(
        month_bill(LINE),
        ApiPricer(prices),
        levers,
        capacity=Capacity(1_000, 100, "test"),
        hardware=RentedGpu("testgpu", 1.0, "test"),
    )
    assert result.alone[0].self_hosted_monthly_usd is None
    assert result.combined[0].self_hosted_monthly_usd == pytest.approx(
        result.baseline.self_hosted_monthly_usd
    )


def test_lever_settings_are_checked(prices: PriceTable) -> None:
    with pytest.raises(BreakEvenError, match=r"--batch-share 1\.5 must be a share"):
        Levers(batch_share=1.5)
    with pytest.raises(BreakEvenError, match="go together"):
        Levers(route_share=0.3)
    with pytest.raises(BreakEvenError, match="no lever to try"):
        what_if(month_bill(LINE), ApiPricer(prices), Levers())
    with pytest.raises(BreakEvenError, match="no API price"):
        what_if(
            month_bill(LINE),
            ApiPricer(prices),
            Levers(route_share=0.1, route_to="testco/unknown"),
        )


def test_a_line_split_keeps_every_token() -> None:
    line = UsageLine(
        "m",
        7,
        num_cached_tokens=3,
        num_cache_write_tokens=1,
        num_output_tokens=5,
        num_requests=3,
    )
    part, rest = line.split(0.5)
    assert part.num_prompt_tokens + rest.num_prompt_tokens == 7
    assert part.num_cached_tokens + rest.num_cached_tokens == 3
    assert (part.num_requests, rest.num_requests) in ((2, 1), (1, 2))
    assert part.num_uncached_tokens >= 0
    assert rest.num_uncached_tokens >= 0
