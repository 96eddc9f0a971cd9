"""The answer on hand-computed bills: rented and owned GPUs, cache hits, batch."""

from __future__ import annotations

import pytest

from server.breakeven.answer import Answer, SuccessRates, answer
from server.breakeven.api_cost import ApiPricer
from server.breakeven.capacity import Capacity
from server.breakeven.cost_curve import CostCurve
from server.breakeven.hosting import FleetPolicy, OpsOverhead, OwnedGpu, RentedGpu
from server.price_table import PriceTable
from tests.server.breakeven.conftest import big_line, month_bill

# The shared setting: a GPU serves 10,000 prompt or 1,000 output tokens a second;
# cache hits cost nothing. The workhorse line then needs
#   2,628M uncached prompt / 10,000 = 262,800 s = 0.1 GPU-month (2,628,000 s)
#   1,314M output / 1,000         = 1,314,000 s = 0.5 GPU-month
# so 0.6 GPUs are busy on average; x2.5 in the busiest hour = 1.5; at 80% headroom
# 1.875 GPUs, so 2 GPUs.
CAPACITY = Capacity(10_000, 1_000, "test")
FLEET = FleetPolicy(peak_to_average=2.5, headroom=0.8)
OPS = OpsOverhead()  # 40 h x $100 = $4,000 a month
API_USD = 16_268.0  # see big_line
VOLUME = 4_942e6  # 3,628M prompt + 1,314M output tokens


def rented_answer(prices: PriceTable) -> Answer:
    bill = month_bill(big_line())
    api = ApiPricer(prices).price_bill(bill)
    hardware = RentedGpu("testgpu", 2.0, "test")  # $2 x 730 h = $1,460/GPU-month
    success = SuccessRates(0.9, 0.9, "test", "test")
    return answer(bill, api, CAPACITY, hardware, OPS, FLEET, "cand", success)


def test_rented_gpus_against_the_api(prices: PriceTable) -> None:
    result = rented_answer(prices)

    assert result.api_monthly_usd == pytest.approx(API_USD)
    assert result.monthly_tokens == VOLUME
    assert result.busy_gpus_average == pytest.approx(0.6)
    assert result.busy_gpus_peak == pytest.approx(1.5)
    # 2 GPUs x $1,460 + $4,000 operations = $6,920.
    assert result.self_hosted.num_gpus == 2
    assert result.self_hosted.parts_usd == pytest.approx(
        {"GPU rental": 2_920.0, "operations": 4_000.0}
    )
    assert result.savings_monthly_usd == pytest.approx(16_268 - 6_920)
    assert result.utilization == pytest.approx(0.3)
    # Autoscaled to the average: 0.6 / 0.8 = 0.75, so 1 GPU: $1,460 + $4,000.
    assert result.self_hosted_autoscaled is not None
    assert result.self_hosted_autoscaled.monthly_usd == pytest.approx(5_460.0)

    # Per million tokens: $16,268 / 4,942 and $6,920 / 4,942.
    assert result.api_usd_per_mtok == pytest.approx(16_268 / 4_942)
    assert result.self_hosted_usd_per_mtok == pytest.approx(6_920 / 4_942)
    # Per successful request: 1,000,000 requests, 90% good.
    assert result.usd_per_request(result.api_monthly_usd, 0.9) == pytest.approx(
        16_268 / 900_000
    )
    assert result.usd_per_request(6_920, 0.9) == pytest.approx(6_920 / 900_000)
    assert result.payback_months is None  # nothing bought


def test_rented_break_even_volume(prices: PriceTable) -> None:
    result = rented_answer(prices)

    # One GPU carries 0.8 / (1.5 / 4,942M) = 2,635.7M tokens a month. With one GPU
    # self-hosting costs $1,460 + $4,000 = $5,460, which the API reaches at
    # 5,460 / (16,268 / 4,942M) = 1,658.7M tokens: inside the first step. The
    # second step ($6,920) is below the API's line from its first token on.
    assert result.curve.tokens_per_gpu_month == pytest.approx(0.8 * VOLUME / 1.5)
    assert result.break_even.monthly_tokens == pytest.approx(5_460 * VOLUME / 16_268)
    assert result.break_even.first_monthly_tokens is None


def test_owned_gpus_pay_back(prices: PriceTable) -> None:
    bill = month_bill(big_line())
    api = ApiPricer(prices).price_bill(bill)
    # $36,000 over 36 months = $1,000; 500 W x 730 h x $0.20 x PUE 1.5 = $109.50;
    # hosting $90.50: $1,200 a GPU-month, of which $200 is cash (power, hosting).
    hardware = OwnedGpu(
        "testgpu",
        purchase_usd=36_000,
        power_w=500,
        lifetime_months=36,
        usd_per_kwh=0.20,
        pue=1.5,
        hosting_usd_per_gpu_month=90.5,
    )
    result = answer(bill, api, CAPACITY, hardware, OPS, FLEET, "cand")

    assert result.self_hosted.num_gpus == 2
    assert result.self_hosted.parts_usd == pytest.approx(
        {
            "hardware, amortized": 2_000.0,
            "power": 219.0,
            "hosting": 181.0,
            "operations": 4_000.0,
        }
    )
    assert result.self_hosted.monthly_usd == pytest.approx(6_400.0)
    # Cash out: 2 x $200 + $4,000 = $4,400, so $11,868 a month saved against the
    # API; the $72,000 purchase pays back in 72,000 / 11,868 = 6.07 months.
    assert result.payback_months == pytest.approx(72_000 / 11_868)
    # Break-even inside the first step: ($1,200 + $4,000) / API price per token.
    assert result.break_even.monthly_tokens == pytest.approx(5_200 * VOLUME / 16_268)
    assert result.self_hosted_autoscaled is None


def test_owned_gpus_that_never_pay_back(prices: PriceTable) -> None:
    # The small model's API bill is tiny: $2,000 of operations alone exceed it.
    bill = month_bill(big_line(model="testco/small"))
    api = ApiPricer(prices).price_bill(bill)
    hardware = OwnedGpu("testgpu", purchase_usd=36_000, power_w=500)
    result = answer(bill, api, CAPACITY, hardware, OpsOverhead(20), FLEET, "cand")

    assert result.payback_months is None


def test_batch_traffic_stays_out_of_the_busiest_hour(prices: PriceTable) -> None:
    # A batch line of 100M uncached prompt and 10M output tokens costs
    # (100 x $2 + 10 x $8) x 50% = $140 and needs 10,000 + 10,000 GPU-seconds.
    batch = big_line(
        num_prompt_tokens=100_000_000,
        num_cached_tokens=0,
        num_output_tokens=10_000_000,
        is_batch=True,
    )
    bill = month_bill(big_line(), batch)
    api = ApiPricer(prices).price_bill(bill)
    hardware = RentedGpu("testgpu", 2.0, "test")
    result = answer(bill, api, CAPACITY, hardware, OPS, FLEET, "cand")

    assert result.api_monthly_usd == pytest.approx(16_268 + 140)
    assert result.busy_gpus_average == pytest.approx(0.6 + 20_000 / 2_628_000)
    # The peak is the interactive load's: 2.5 x 0.6.
    assert result.busy_gpus_peak == pytest.approx(1.5)


def test_cache_hits_cost_what_the_capacity_says(prices: PriceTable) -> None:
    # With a cache hit costing half a prompt token's work, the 1,000M cached
    # tokens add 500M / 10,000 = 50,000 s to 1,576,800 s: 0.619 GPUs busy.
    capacity = Capacity(10_000, 1_000, "test", cached_prompt_work=0.5)
    bill = month_bill(big_line())
    api = ApiPricer(prices).price_bill(bill)
    hardware = RentedGpu("testgpu", 2.0, "test")
    result = answer(bill, api, capacity, hardware, OPS, FLEET, "cand")

    assert result.busy_gpus_average == pytest.approx(0.6 + 50_000 / 2_628_000)


def test_overhead_as_a_share_of_hardware(prices: PriceTable) -> None:
    bill = month_bill(big_line())
    api = ApiPricer(prices).price_bill(bill)
    hardware = RentedGpu("testgpu", 2.0, "test")
    ops = OpsOverhead(multiplier=0.5)
    result = answer(bill, api, CAPACITY, hardware, ops, FLEET, "cand")

    # 2 GPUs x $1,460 = $2,920, and half of it again.
    assert result.self_hosted.monthly_usd == pytest.approx(2_920 * 1.5)
    assert result.curve.usd_per_gpu_month == pytest.approx(1_460 * 1.5)
    assert result.curve.fixed_usd_per_month == 0


def test_never_breaks_even_when_a_full_gpu_earns_less_than_it_costs(
    prices: PriceTable,
) -> None:
    # At testco/small a GPU's 2,635.7M tokens are worth 1/10 of the big model's
    # $8,676 = $867.6, below the GPU's $1,460.
    bill = month_bill(big_line(model="testco/small"))
    api = ApiPricer(prices).price_bill(bill)
    hardware = RentedGpu("testgpu", 2.0, "test")
    result = answer(bill, api, CAPACITY, hardware, OPS, FLEET, "cand")

    assert result.api_monthly_usd == pytest.approx(1_626.8)
    assert result.break_even.monthly_tokens is None
    assert result.break_even.reason.startswith("never")


def test_break_even_after_the_api_wins_back_a_step() -> None:
    # $1 a token-unit on the API; a GPU carries 100 units for $90, plus $5 fixed.
    # Step n spans (100(n-1), 100n] at 90n + 5, which the API reaches at 90n + 5.
    # That lies inside its step while 90n + 5 > 100(n - 1), i.e. up to n = 10,
    # so self-hosting is first cheaper at 95 and stays cheaper from 905.
    curve = CostCurve(
        api_usd_per_token=1.0,
        peak_busy_gpus_per_token=0.01,
        fleet=FleetPolicy(headroom=1.0),
        usd_per_gpu_month=90.0,
        fixed_usd_per_month=5.0,
    )
    result = curve.break_even()

    assert result.monthly_tokens == pytest.approx(905)
    assert result.first_monthly_tokens == pytest.approx(95)
    assert curve.self_hosted_usd(905) == pytest.approx(905)


def test_fleet_counts_whole_replicas() -> None:
    assert FleetPolicy(headroom=0.8).num_gpus(1.6) == 2  # exactly full, not 3
    assert FleetPolicy(headroom=0.8).num_gpus(0.0) == 1
    # 2.5 busy GPUs at 80% in replicas of 2: 1.5625 replicas, so 2, so 4 GPUs.
    assert FleetPolicy(headroom=0.8, gpus_per_replica=2).num_gpus(2.5) == 4
    assert FleetPolicy(min_replicas=3).num_gpus(0.1) == 3
