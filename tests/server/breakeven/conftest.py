"""Small price tables and bills whose right answers are worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.breakeven.usage import Bill, UsageLine
from server.price_table import PriceTable

SAMPLES = Path(__file__).resolve().parents[3] / "server" / "breakeven" / "samples"

# Round numbers, so that every test can say its answer in a comment.
TEST_PRICES = """
apis:
  testco/big:
    input_usd_per_mtok: 2.0
    cached_input_usd_per_mtok: 0.5
    cache_write_usd_per_mtok: 2.5
    cache_write_1h_usd_per_mtok: 4.0
    output_usd_per_mtok: 8.0
    batch_discount: 0.5
    batch_discount_verified: true
    source: test
    as_of: 2026-12-01
  testco/small:
    input_usd_per_mtok: 0.2
    cached_input_usd_per_mtok: 0.05
    output_usd_per_mtok: 0.8
    batch_discount: 0.5
    batch_discount_verified: true
    source: test
    as_of: 2026-12-01
  testco/nobatch:
    input_usd_per_mtok: 1.0
    output_usd_per_mtok: 4.0
    source: test
    as_of: 2026-12-01
gpus:
  testgpu:
    low_usd_per_hour: 1.0
    high_usd_per_hour: 3.0
    source: test
    as_of: 2026-12-01
"""


@pytest.fixture
def prices(tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.yaml"
    path.write_text(TEST_PRICES)
    return PriceTable.load(path)


def month_bill(*lines: UsageLine) -> Bill:
    """A bill of exactly one month (730 hours)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return Bill("test", "test", list(lines), num_months=1.0, start=start)


def big_line(**changes: object) -> UsageLine:
    """The workhorse line: 3,628M prompt tokens (1,000M cached), 1,314M output.

    At testco/big: 2,628M uncached x $2 + 1,000M cached x $0.5 + 1,314M output x $8
    = $5,256 + $500 + $10,512 = $16,268 a month.
    """
    fields: dict[str, object] = {
        "model": "testco/big",
        "num_prompt_tokens": 3_628_000_000,
        "num_cached_tokens": 1_000_000_000,
        "num_output_tokens": 1_314_000_000,
        "num_requests": 1_000_000,
        "num_successful": 900_000,
    }
    fields.update(changes)
    return UsageLine(**fields)  # type: ignore[arg-type]
