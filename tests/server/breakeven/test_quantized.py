"""The quantization lever's factor from a `bench compare` result: a file or the
history, the variant chosen by its quality gate, and what the what-if says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.history import History
from server.breakeven.api_cost import ApiPricer
from server.breakeven.bench_history import latest_run
from server.breakeven.capacity import Capacity
from server.breakeven.document import to_markdown
from server.breakeven.errors import BreakEvenError
from server.breakeven.hosting import FleetPolicy, RentedGpu
from server.breakeven.quantized import from_compare_file, from_compare_run
from server.breakeven.usage import UsageLine
from server.breakeven.whatif import Levers, what_if
from server.breakeven.whatif_report import whatif_document, whatif_json
from server.price_table import PriceTable
from tests.server.breakeven.conftest import month_bill


def variant(
    model: str,
    precision: str,
    throughput_ratio: float | None,
    verdict: str | None,
    ppl_increase_pct: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A variant as `bench.compare_summary` writes it (the figures read here)."""
    quality = None
    if verdict is not None:
        texts = {
            text: {"ppl_increase_pct": pct, "mean_kl": 0.01, "top1_agreement": 0.95}
            for text, pct in (ppl_increase_pct or {}).items()
        }
        quality = {"texts": texts, "gate_verdict": verdict, "reference_model": "smol"}
    return {
        "model": model,
        "precision": precision,
        "output_throughput": None
        if throughput_ratio is None
        else 100 * throughput_ratio,
        "total_token_throughput": None,
        "throughput_ratio": throughput_ratio,
        "usd_per_m_output_tokens": None,
        "quality": quality,
    }


def compare_result(
    *variants: dict[str, Any], created_at: str = "2026-12-01T10:00:00+00:00"
) -> dict[str, Any]:
    return {
        "kind": "compare",
        "created_at": created_at,
        "environment": {"git_revision": "abc1234", "hardware": "h100"},
        "config": {"model": "smol", "baseline": "smol", "concurrency": 4},
        "baseline": "smol",
        "variants": list(variants),
    }


BASELINE = variant("smol", "bf16", 1.0, "baseline", {"wiki": 0.0, "code": 0.0})
INT8 = variant("smol-int8", "int8", 1.25, "pass", {"wiki": 0.8, "code": 1.1})
W8A8 = variant("smol-w8a8", "w8a8", 1.1, "pass", {"wiki": 0.5})
INT4 = variant("smol-int4", "int4", 2.0, "fail", {"wiki": 9.5, "code": 14.0})
UNKNOWN = variant("smol-gguf", "q4", 1.9, None)
COMPARE = compare_result(BASELINE, INT8, INT4, W8A8, UNKNOWN)

# 1,000M prompt tokens (200M cached, costing nothing on the GPU) and 100M output
# a month; at 1 prompt and 0.1 output tokens/s per GPU: 800M + 1,000M = 1,800M
# GPU-seconds over 2,628,000 s a month = 684.9 busy GPUs, so 685 at peak 1 and
# full headroom.
LINE = UsageLine(
    "testco/big",
    num_prompt_tokens=1_000_000_000,
    num_cached_tokens=200_000_000,
    num_output_tokens=100_000_000,
)


@pytest.fixture
def compare_file(tmp_path: Path) -> Path:
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(COMPARE))
    return path


def test_the_fastest_variant_that_passed_the_gate(compare_file: Path) -> None:
    # int4 (x2.0) failed its gate and q4 (x1.9) has no report: int8 (x1.25) beats
    # w8a8 (x1.1).
    chosen = from_compare_file(compare_file)

    assert (chosen.model, chosen.capacity_factor) == ("smol-int8", 1.25)
    assert chosen.gate_verdict == "pass"
    assert chosen.ppl_increase_pct == {"wiki": 0.8, "code": 1.1}
    assert chosen.quality_summary() == "perplexity +1.1% code, +0.8% wiki"
    assert str(compare_file) in chosen.source
    assert "git abc1234" in chosen.source
    assert "concurrency 4" in chosen.notes[0]


def test_a_failed_gate_is_taken_only_when_named(compare_file: Path) -> None:
    chosen = from_compare_file(compare_file, "smol-int4")

    assert chosen.capacity_factor == 2.0
    assert chosen.gate_verdict == "fail"
    assert any(
        "only because --quantized-variant named it (quality gate: fail, "
        "perplexity +14.0% code, +9.5% wiki)" in note
        for note in chosen.notes
    )


def test_no_variant_passed_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(compare_result(BASELINE, INT4, UNKNOWN)))

    message = (
        r"no variant passed the quality gate \(smol-int4: quality gate: fail, "
        r"perplexity \+14.0% code, \+9.5% wiki; smol-gguf: quality is unknown "
        r"\(no quantize report\)\).*--quantized-variant NAME"
    )
    with pytest.raises(BreakEvenError, match=message):
        from_compare_file(path)
    assert from_compare_file(path, "smol-gguf").capacity_factor == 1.9


def test_bad_variant_names(compare_file: Path) -> None:
    with pytest.raises(BreakEvenError, match="'smol-int2' is not in the comparison"):
        from_compare_file(compare_file, "smol-int2")
    with pytest.raises(BreakEvenError, match="'smol' is the baseline"):
        from_compare_file(compare_file, "smol")


def test_a_file_that_is_not_a_comparison(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"kind": "run", "points": []}))
    with pytest.raises(BreakEvenError, match="not a `bench compare` result"):
        from_compare_file(path)


def test_another_baseline_is_noted(compare_file: Path) -> None:
    chosen = from_compare_file(compare_file, model="llama-8b")
    assert any("baseline is 'smol', not 'llama-8b'" in n for n in chosen.notes)


def test_the_latest_comparison_in_the_history(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    history = History(path)
    older_int8 = {**INT8, "throughput_ratio": 1.5}
    history.record(
        compare_result(BASELINE, older_int8, created_at="2026-11-01T10:00:00+00:00")
    )
    history.record(COMPARE)

    run = latest_run(path, "compare", "smol")
    chosen = from_compare_run(run)

    assert run.id == 2
    assert chosen.capacity_factor == 1.25
    assert "compare 2 of smol on 2026-12-01T10:00:00+00:00" in chosen.source


def test_the_what_if_prices_the_measured_factor(
    prices: PriceTable, compare_file: Path
) -> None:
    levers = Levers(quantized=from_compare_file(compare_file))
    result = what_if(
        month_bill(LINE),
        ApiPricer(prices),
        levers,
        capacity=Capacity(1.0, 0.1, "test"),
        hardware=RentedGpu("testgpu", 1.0, "test"),
        fleet=FleetPolicy(peak_to_average=1.0, headroom=1.0),
    )

    # x1.25: 684.9 / 1.25 = 547.9 busy GPUs, so 548; 137 fewer at $730 a month.
    quantized = result.alone[0]
    assert (result.baseline.num_gpus, quantized.num_gpus) == (685, 548)
    assert result.baseline.self_hosted_monthly_usd == pytest.approx(
        (quantized.self_hosted_monthly_usd or 0) + 137 * 730
    )
    assert quantized.setting == (
        "int8, capacity x1.25 (smol-int8; perplexity +1.1% code, +0.8% wiki)"
    )

    data = whatif_json(result)
    assert data["quantization"]["capacity_factor"] == 1.25
    assert data["quantization"]["variant"] == "smol-int8"
    assert data["quantization"]["ppl_increase_pct"] == {"wiki": 0.8, "code": 1.1}
    assert str(compare_file) in data["quantization"]["source"]
    text = to_markdown(whatif_document(result, "What-if"), [])
    assert "## Quantization factor" in text
    assert "+0.80%" in text


def test_the_hand_factor_still_works_and_says_so(prices: PriceTable) -> None:
    result = what_if(
        month_bill(LINE), ApiPricer(prices), Levers(quantize_capacity_factor=1.6)
    )
    data = whatif_json(result)
    assert data["quantization"]["capacity_factor"] == 1.6
    assert data["quantization"]["source"] == (
        "given by hand (--quantize-capacity-factor)"
    )
    assert data["quantization"]["variant"] is None


def test_a_factor_by_hand_and_a_measured_one(compare_file: Path) -> None:
    with pytest.raises(BreakEvenError, match="both given; keep one"):
        Levers(quantize_capacity_factor=1.6, quantized=from_compare_file(compare_file))
