"""Prices, calibrations and absorbed cost, checked against numbers worked by hand."""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from server.absorbed_cost import allocate_absorbed_cost, request_weight
from server.config import ModelConfig
from server.pricing import (
    Calibration,
    CalibrationError,
    ModelPricing,
    PriceTable,
    PricingError,
    api_equivalent_cost_usd,
    calibration_path,
    load_calibration,
    save_calibration,
)

AS_OF = date(2026, 12, 3)
# Six dollars an hour is ten cents a minute: the absorbed-cost fixtures use 60 s
# windows, so every fully-up window bills exactly $0.10.
USD_PER_HOUR = 6.0
# A unix time that is a multiple of 60, so windows line up with the minutes below.
T0 = 1_800_000_000.0


def make_model(**fields: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "smol", "source": "builtin:smol", **fields}
    )


def make_calibration(**fields: Any) -> Calibration:
    values: dict[str, Any] = {
        "model": "smol",
        "hardware": "h100-sxm",
        "prompt_s_per_token": 0.0005,
        "completion_s_per_token": 0.02,
        "reference_concurrency": 16,
        "fit_residual_rel_rms": 0.03,
        "num_fit_points": 12,
        "created_at": datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
        "tokenmill_version": "0.1.0",
        "engine_version": "vllm 0.32.0",
    }
    return Calibration.model_validate({**values, **fields})


# --- list prices ---------------------------------------------------------------


def test_explicit_prices_price_cached_tokens_apart() -> None:
    model = make_model(
        prices={
            "input_usd_per_mtok": 1.0,
            "cached_input_usd_per_mtok": 0.25,
            "output_usd_per_mtok": 4.0,
        }
    )
    pricing = ModelPricing.for_model(model, None)

    assert pricing.source == "explicit"
    # 600 uncached x $1 + 400 cached x $0.25 + 500 completion x $4 = $2,700 per
    # million tokens' worth, i.e. $0.0027.
    assert pricing.list_cost_usd(1000, 400, 500) == pytest.approx(0.0027)
    # 400 cached x ($1 - $0.25) / 1e6
    assert pricing.cache_savings_usd(400) == pytest.approx(0.0003)
    assert pricing.work_s(1000, 400, 500) is None


def test_explicit_prices_without_cached_rate_charge_the_input_rate() -> None:
    prices = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 4.0}
    pricing = ModelPricing.for_model(make_model(prices=prices), None)

    # (1000 x $1 + 500 x $4) / 1e6: the cached 400 pay full price.
    assert pricing.list_cost_usd(1000, 400, 500) == pytest.approx(0.003)
    assert pricing.cache_savings_usd(400) == 0


def test_calibrated_prices_come_from_hardware_cost() -> None:
    model = make_model(hardware={"name": "h100-sxm", "usd_per_hour": 2.0})
    pricing = ModelPricing.for_model(model, make_calibration())

    assert pricing.source == "calibrated"
    # $2/h / 3600 s/h x 0.0005 s/token x 1e6 tokens = $0.2778 per million
    assert pricing.prompt_usd_per_mtok == pytest.approx(0.277778, rel=1e-5)
    # A prefix-cache hit skips prefill: calibrated at 0 s, so it costs nothing.
    assert pricing.cached_prompt_usd_per_mtok == 0
    # $2/h / 3600 x 0.02 s/token x 1e6 = $11.11 per million
    assert pricing.completion_usd_per_mtok == pytest.approx(11.1111, rel=1e-5)

    # 600 uncached x 0.0005 s + 400 cached x 0 s + 500 x 0.02 s = 0.3 + 10 = 10.3 s
    assert pricing.work_s(1000, 400, 500) == pytest.approx(10.3)
    # ... and 10.3 engine-seconds at $2/h is 10.3 x 2 / 3600 = $0.0057222.
    assert pricing.list_cost_usd(1000, 400, 500) == pytest.approx(10.3 * 2 / 3600)


def test_explicit_prices_win_and_keep_the_calibrated_work() -> None:
    model = make_model(
        hardware={"name": "h100-sxm", "usd_per_hour": 2.0},
        prices={"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 4.0},
    )
    pricing = ModelPricing.for_model(model, make_calibration())

    assert pricing.source == "explicit"
    assert pricing.prompt_usd_per_mtok == 1.0
    assert pricing.work_s(1000, 0, 0) == pytest.approx(0.5)


def test_unknown_without_hardware_cost_says_what_to_set() -> None:
    pricing = ModelPricing.for_model(make_model(), make_calibration())

    assert not pricing.is_known
    assert pricing.reason is not None
    assert "model 'smol' has no hardware.usd_per_hour in models.yaml" in pricing.reason
    assert pricing.list_cost_usd(10, 0, 10) is None
    assert pricing.cache_savings_usd(5) is None


def test_unknown_without_calibration_names_the_file_and_command(
    tmp_path: Path,
) -> None:
    model = make_model(hardware={"name": "h100-sxm", "usd_per_hour": 2.0})
    pricing = ModelPricing.from_home(model, tmp_path)

    assert pricing.source == "unknown"
    assert pricing.reason == (
        f"no calibration at {tmp_path / 'calibrations' / 'smol.json'} for model "
        "'smol'; run `tokenmill bench calibrate smol`"
    )
    assert pricing.work_s(10, 0, 10) is None


def test_calibration_from_other_hardware_is_not_used() -> None:
    model = make_model(hardware={"name": "l40s", "usd_per_hour": 1.0})
    pricing = ModelPricing.for_model(model, make_calibration())

    assert pricing.source == "unknown"
    assert pricing.reason is not None
    assert "measured on 'h100-sxm'" in pricing.reason
    assert "'l40s'" in pricing.reason


def test_broken_calibration_makes_prices_unknown(tmp_path: Path) -> None:
    path = calibration_path(tmp_path, "smol")
    path.parent.mkdir(parents=True)
    path.write_text('{"model": "smol"}')
    model = make_model(hardware={"name": "h100-sxm", "usd_per_hour": 2.0})

    pricing = ModelPricing.from_home(model, tmp_path)

    assert pricing.source == "unknown"
    assert pricing.reason is not None
    assert str(path) in pricing.reason


def test_cached_tokens_beyond_prompt_tokens_are_refused() -> None:
    pricing = ModelPricing.for_model(
        make_model(prices={"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}),
        None,
    )
    with pytest.raises(ValueError, match="num_cached 11 exceeds num_prompt 10"):
        pricing.list_cost_usd(10, 11, 0)


# --- calibration file ------------------------------------------------------------


def test_calibration_round_trips(tmp_path: Path) -> None:
    calibration = make_calibration(cached_prompt_s_per_token=0.00001)
    path = calibration_path(tmp_path, "smol")

    save_calibration(calibration, path)

    assert path == tmp_path / "calibrations" / "smol.json"
    assert load_calibration(path) == calibration


def test_calibration_defaults_cached_tokens_to_free(tmp_path: Path) -> None:
    path = tmp_path / "smol.json"
    save_calibration(make_calibration(), path)
    assert load_calibration(path).cached_prompt_s_per_token == 0


def test_invalid_calibration_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "smol.json"
    path.write_text(make_calibration().model_dump_json().replace("16", "0", 1))
    with pytest.raises(CalibrationError, match="reference_concurrency") as info:
        load_calibration(path)
    assert str(path) in str(info.value)
    with pytest.raises(CalibrationError, match="cannot read calibration"):
        load_calibration(tmp_path / "missing.json")


def test_calibration_path_refuses_a_path_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot name a calibration file"):
        calibration_path(tmp_path, "../smol")


# --- the API price table ---------------------------------------------------------


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_shipped_table_has_every_row_with_source_and_date(table: PriceTable) -> None:
    anthropic = [
        *(f"claude-opus-4.{v}" for v in (5, 6, 7, 8)),
        "claude-opus-4",
        "claude-opus-4.1",
        "claude-sonnet-4",
        "claude-sonnet-4.5",
        "claude-sonnet-4.6",
        "claude-haiku-4.5",
    ]
    openai = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "gpt-5-mini"]
    expected = {
        *(f"anthropic/{m}" for m in anthropic),
        *(f"openai/{m}" for m in openai),
        "google/gemini-2.5-pro",
        "google/gemini-2.5-flash",
    }
    assert set(table.apis) == expected
    for entry in table.apis.values():
        assert entry.source
        assert entry.as_of == AS_OF
        if entry.key.startswith("anthropic/"):
            assert (entry.batch_discount, entry.batch_discount_verified) == (0.5, True)
        if entry.key.startswith("openai/"):
            assert (entry.batch_discount, entry.batch_discount_verified) == (0.5, False)

    sonnet = table.get("anthropic/claude-sonnet-4.5")
    assert (
        sonnet.input_usd_per_mtok,
        sonnet.cached_input_usd_per_mtok,
        sonnet.cache_write_usd_per_mtok,
        sonnet.cache_write_1h_usd_per_mtok,
        sonnet.output_usd_per_mtok,
    ) == (3.0, 0.3, 3.75, 6.0, 15.0)

    assert set(table.gpus) == {"a100-80gb", "h100-sxm", "h200", "l40s"}
    assert table.gpu("h200").low_usd_per_hour == 2.5
    assert all(gpu.source == "Mercatus, May 2026" for gpu in table.gpus.values())


def test_unknown_key_suggests_close_matches(table: PriceTable) -> None:
    with pytest.raises(PricingError, match="did you mean 'openai/gpt-4o-mini'"):
        table.get("openai/gpt-4o-mni")


def test_override_replaces_and_adds_entries(tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(
        "apis:\n"
        "  openai/gpt-4o-mini:\n"
        "    input_usd_per_mtok: 0.2\n"
        "    output_usd_per_mtok: 0.8\n"
        "    source: my invoice\n"
        "    as_of: 2027-01-05\n"
        "  acme/big-model:\n"
        "    input_usd_per_mtok: 9\n"
        "    output_usd_per_mtok: 30\n"
        "    source: acme.example/pricing\n"
        "    as_of: 2027-01-05\n"
    )
    table = PriceTable.for_home(tmp_path)

    mini = table.get("openai/gpt-4o-mini")
    assert (mini.input_usd_per_mtok, mini.cached_input_usd_per_mtok) == (0.2, None)
    assert mini.source == "my invoice"
    assert "acme/big-model" in table
    assert table.get("openai/gpt-4o").input_usd_per_mtok == 2.5


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  openai/gpt-4o:\n    input_usd_per_mtok: -1\n    output_usd_per_mtok: 1\n"
            "    source: x\n    as_of: 2027-01-05\n",
            "apis entry 'openai/gpt-4o': input_usd_per_mtok: Input should be greater "
            "than or equal to 0 (got -1)",
        ),
        (
            "  openai/gpt-4o:\n    input_usd_per_mtok: 1\n    output_usd_per_mtok: 1\n",
            "apis entry 'openai/gpt-4o': source: Field required",
        ),
        (
            "  OpenAI/GPT-4o:\n    input_usd_per_mtok: 1\n    output_usd_per_mtok: 1\n"
            "    source: x\n    as_of: 2027-01-05\n",
            "key 'OpenAI/GPT-4o' must be 'provider/model' in lowercase",
        ),
    ],
)
def test_bad_override_names_file_and_entry(
    tmp_path: Path, entry: str, expected: str
) -> None:
    override = tmp_path / "mine.yaml"
    override.write_text("apis:\n" + entry)
    with pytest.raises(PricingError) as info:
        PriceTable.load(override)
    assert str(override) in str(info.value)
    assert expected in str(info.value)


# --- API-equivalent cost -----------------------------------------------------------


def test_api_equivalent_anthropic_with_cache_and_batch(table: PriceTable) -> None:
    sonnet = table.get("anthropic/claude-sonnet-4.5")
    # 10,000 prompt of which 8,000 cached, 1,000 completion, at $3 / $0.30 / $15:
    # 2,000 x 3 + 8,000 x 0.30 + 1,000 x 15 = 6,000 + 2,400 + 15,000 = 23,400 -> /1e6
    assert api_equivalent_cost_usd(sonnet, 10_000, 8_000, 1_000) == pytest.approx(
        0.0234
    )
    # Message Batches halve it: 0.0234 x 0.5
    assert api_equivalent_cost_usd(
        sonnet, 10_000, 8_000, 1_000, batch=True
    ) == pytest.approx(0.0117)


def test_api_equivalent_openai_with_unverified_batch(
    table: PriceTable, caplog: pytest.LogCaptureFixture
) -> None:
    mini = table.get("openai/gpt-4o-mini")
    # 2,000 x 0.15 + 8,000 x 0.075 + 1,000 x 0.60 = 300 + 600 + 600 = 1,500 -> /1e6
    assert api_equivalent_cost_usd(mini, 10_000, 8_000, 1_000) == pytest.approx(0.0015)
    with caplog.at_level(logging.WARNING, logger="server.pricing"):
        batch_usd = api_equivalent_cost_usd(mini, 10_000, 8_000, 1_000, batch=True)
    # The unverified 50% is applied, with a warning: 0.0015 x 0.5
    assert batch_usd == pytest.approx(0.00075)
    assert "not verified" in caplog.text


def test_api_equivalent_without_cached_rate_or_batch(table: PriceTable) -> None:
    flash = table.get("google/gemini-2.5-flash")
    # No cached rate: all 10,000 prompt tokens at $0.30, then 1,000 x $2.50:
    # 3,000 + 2,500 = 5,500 -> /1e6
    assert api_equivalent_cost_usd(flash, 10_000, 8_000, 1_000) == pytest.approx(0.0055)
    with pytest.raises(PricingError, match="no batch_discount"):
        api_equivalent_cost_usd(flash, 10_000, 8_000, 1_000, batch=True)


# --- absorbed cost -------------------------------------------------------------------


def test_absorbed_cost_three_minutes_with_an_idle_one() -> None:
    # Up for three minutes at $6/h: three $0.10 windows.
    result = allocate_absorbed_cost(
        [
            # Minute 1: weights 1 and 3 split $0.10 as $0.025 / $0.075.
            ("a", T0 + 5, T0 + 15, 1.0),
            ("b", T0 + 20, T0 + 50, 3.0),
            # Minute 2: equal weights split $0.10 as $0.05 each.
            ("c", T0 + 65, T0 + 95, 2.0),
            ("d", T0 + 100, T0 + 110, 2.0),
        ],
        uptime=[(T0, T0 + 180)],
        usd_per_hour=USD_PER_HOUR,
    )

    expected = {"a": 0.025, "b": 0.075, "c": 0.05, "d": 0.05}
    assert result.per_request_usd == pytest.approx(expected, abs=1e-12)
    # Minute 3 had nobody: idle.
    assert result.idle_usd == pytest.approx(0.10, abs=1e-12)
    assert result.bill_usd == pytest.approx(0.30, abs=1e-12)
    assert result.utilization == pytest.approx(2 / 3)
    assert result.outside_uptime_ids == []
    assert_bill_is_split(result.per_request_usd, result.idle_usd, result.bill_usd)


def test_absorbed_cost_long_request_spans_windows() -> None:
    result = allocate_absorbed_cost(
        [
            # 120 s long, weight 4: 30 s / 60 s / 30 s in the three windows, so
            # weights 1, 2 and 1 there.
            ("long", T0 + 30, T0 + 150, 4.0),
            ("short", T0 + 60, T0 + 90, 2.0),
        ],
        uptime=[(T0, T0 + 180)],
        usd_per_hour=USD_PER_HOUR,
    )
    # Window 1: long alone, $0.10. Window 2: long 2 vs short 2, $0.05 each.
    # Window 3: long alone, $0.10. Long: 0.10 + 0.05 + 0.10 = 0.25.
    assert result.per_request_usd == pytest.approx(
        {"long": 0.25, "short": 0.05}, abs=1e-12
    )
    assert result.idle_usd == 0
    assert result.utilization == pytest.approx(1.0)


def test_absorbed_cost_instant_request_and_partial_uptime() -> None:
    # Up from 0:30 to 1:30: two half-windows of $0.05.
    result = allocate_absorbed_cost(
        [("instant", T0 + 70, T0 + 70, 1.0), ("other", T0 + 75, T0 + 85, 1.0)],
        uptime=[(T0 + 30, T0 + 90)],
        usd_per_hour=USD_PER_HOUR,
    )
    # The zero-length request counts whole in its window: $0.05 split evenly.
    assert result.per_request_usd == pytest.approx(
        {"instant": 0.025, "other": 0.025}, abs=1e-12
    )
    assert result.idle_usd == pytest.approx(0.05, abs=1e-12)
    assert result.bill_usd == pytest.approx(0.10, abs=1e-12)


def test_absorbed_cost_reports_requests_outside_uptime() -> None:
    result = allocate_absorbed_cost(
        [("late", T0 + 100, T0 + 110, 1.0), ("idle", T0 + 10, T0 + 20, 0.0)],
        uptime=[(T0, T0 + 60)],
        usd_per_hour=USD_PER_HOUR,
    )
    assert result.per_request_usd == {"late": 0.0, "idle": 0.0}
    assert result.outside_uptime_ids == ["late"]
    # A zero-weight request did no work: its window is idle.
    assert result.idle_usd == pytest.approx(0.10, abs=1e-12)


def test_absorbed_cost_invariant_holds_on_messy_input() -> None:
    rng = random.Random(7)
    requests = []
    for i in range(300):
        start_s = T0 + rng.uniform(0, 3600)
        duration_s = rng.expovariate(1 / 20)
        requests.append((f"r{i}", start_s, start_s + duration_s, rng.uniform(0, 5)))
    uptime = [(T0 - 100, T0 + 1000), (T0 + 900, T0 + 2000), (T0 + 2500, T0 + 4000)]

    result = allocate_absorbed_cost(requests, uptime, usd_per_hour=3.7, window_s=60)

    # Overlapping uptime is merged: 2,100 s + 1,500 s at $3.7/h.
    assert result.bill_usd == pytest.approx(3600 * 3.7 / 3600)
    assert_bill_is_split(result.per_request_usd, result.idle_usd, result.bill_usd)
    assert all(usd >= 0 for usd in result.per_request_usd.values())


def test_absorbed_cost_refuses_bad_spans() -> None:
    with pytest.raises(ValueError, match="request 'x' spans"):
        allocate_absorbed_cost([("x", 10.0, 5.0, 1.0)], [(0.0, 60.0)], 1.0)
    with pytest.raises(ValueError, match="appears twice"):
        allocate_absorbed_cost(
            [("x", 1.0, 2.0, 1.0), ("x", 1.0, 2.0, 1.0)], [(0.0, 60.0)], 1.0
        )


def test_request_weight_falls_back_to_tokens() -> None:
    assert request_weight(10.3, 1000, 400, 500) == 10.3
    # Uncached prompt plus completion: 600 + 500.
    assert request_weight(None, 1000, 400, 500) == 1100.0


def assert_bill_is_split(
    per_request_usd: dict[str, float], idle_usd: float, bill_usd: float
) -> None:
    assert math.isclose(
        math.fsum(per_request_usd.values()) + idle_usd, bill_usd, abs_tol=1e-9
    )
