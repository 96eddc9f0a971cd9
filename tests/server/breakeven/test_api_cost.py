"""The API side: list prices with cache reads and writes, batch, model names."""

from __future__ import annotations

import pytest

from server.breakeven.api_cost import ApiPricer
from server.breakeven.errors import BreakEvenError
from server.breakeven.usage import UsageLine
from server.price_table import PriceTable
from tests.server.breakeven.conftest import big_line, month_bill


def test_cache_reads_and_writes_at_their_rates(prices: PriceTable) -> None:
    # 1,000,000 prompt tokens: 200k cache reads, 100k 5-minute and 50k 1-hour
    # writes, so 650k plain. At testco/big, per million:
    # 0.65 x $2 + 0.2 x $0.5 + 0.1 x $2.5 + 0.05 x $4 + 0.1 output x $8
    # = 1.30 + 0.10 + 0.25 + 0.20 + 0.80 = $2.65.
    line = UsageLine(
        "testco/big",
        num_prompt_tokens=1_000_000,
        num_cached_tokens=200_000,
        num_cache_write_tokens=100_000,
        num_cache_write_1h_tokens=50_000,
        num_output_tokens=100_000,
    )
    pricer = ApiPricer(prices)

    assert pricer.line_cost_usd(line) == pytest.approx(2.65)
    batch = UsageLine(**{**vars(line), "is_batch": True})
    assert pricer.line_cost_usd(batch) == pytest.approx(2.65 * 0.5)


def test_missing_cache_prices_fall_back_to_input(prices: PriceTable) -> None:
    # testco/nobatch has no cached or write price: 1M prompt tokens at $1.
    line = UsageLine(
        "testco/nobatch",
        num_prompt_tokens=1_000_000,
        num_cached_tokens=400_000,
        num_cache_write_tokens=100_000,
    )
    pricer = ApiPricer(prices)

    assert pricer.line_cost_usd(line) == pytest.approx(1.0)
    assert any("no cached-input price" in note for note in pricer.notes)


def test_batch_without_a_discount_is_an_error(prices: PriceTable) -> None:
    line = UsageLine("testco/nobatch", num_prompt_tokens=10, is_batch=True)
    with pytest.raises(BreakEvenError, match="no batch_discount"):
        ApiPricer(prices).line_cost_usd(line)


def test_unverified_batch_discount_is_noted() -> None:
    line = UsageLine("gpt-4o-mini", num_prompt_tokens=10, is_batch=True)
    pricer = ApiPricer(PriceTable.load())
    pricer.line_cost_usd(line)
    assert any("not verified" in note for note in pricer.notes)


@pytest.mark.parametrize(
    ("bill_model", "key"),
    [
        ("gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
        ("gpt-4o", "openai/gpt-4o"),
        ("openai/gpt-4.1", "openai/gpt-4.1"),
        ("claude-sonnet-4-20250514", "anthropic/claude-sonnet-4"),
        ("claude-haiku-4-5-20251001", "anthropic/claude-haiku-4.5"),
        ("claude-opus-4-1-20250805", "anthropic/claude-opus-4.1"),
        ("claude-sonnet-4-5", "anthropic/claude-sonnet-4.5"),
    ],
)
def test_bill_model_names_find_their_price(bill_model: str, key: str) -> None:
    assert ApiPricer(PriceTable.load()).price_for(bill_model).key == key


def test_model_map_wins_and_is_checked(prices: PriceTable) -> None:
    pricer = ApiPricer(prices, {"our-router": "testco/small"})
    assert pricer.price_for("our-router").key == "testco/small"
    with pytest.raises(BreakEvenError, match="not in the price table"):
        ApiPricer(prices, {"x": "testco/huge"})


def test_unknown_models_are_named_together(prices: PriceTable) -> None:
    bill = month_bill(big_line(model="mystery-1"), big_line(model="mystery-2"))
    with pytest.raises(BreakEvenError) as caught:
        ApiPricer(prices).price_bill(bill)
    message = str(caught.value)
    assert "'mystery-1', 'mystery-2'" in message
    assert "--model-map mystery-1=provider/model" in message


def test_a_bill_priced_by_model(prices: PriceTable) -> None:
    bill = month_bill(big_line(), big_line(model="testco/small"))
    cost = ApiPricer(prices).price_bill(bill)

    # $16,268 on the big model, a tenth of its prices on the small one.
    assert [c.price_key for c in cost.by_model] == ["testco/big", "testco/small"]
    assert cost.list_monthly_usd == pytest.approx(16_268 + 1_626.8)
    assert cost.billed_monthly_usd is None
    assert cost.monthly_usd == cost.list_monthly_usd


def test_the_bills_own_cost_wins(prices: PriceTable) -> None:
    bill = month_bill(big_line(billed_cost_usd=12_000.0))
    cost = ApiPricer(prices).price_bill(bill)
    assert cost.billed_monthly_usd == 12_000.0
    assert cost.monthly_usd == 12_000.0
