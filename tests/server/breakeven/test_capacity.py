"""Capacity by hand, from a vLLM benchmark result, or from a calibration."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.breakeven.capacity import Capacity, from_file
from server.breakeven.errors import BreakEvenError
from server.breakeven.usage import UsageLine
from server.calibration import Calibration, save_calibration
from tests.server.breakeven.conftest import SAMPLES

RUN = {
    "total_token_throughput": 10_000.0,
    "request_throughput": 10.0,
    "request_goodput": None,
    "total_input_tokens": 800_000,
    "total_output_tokens": 200_000,
    "p99_ttft_ms": 400.0,
    "p99_tpot_ms": 30.0,
}


def test_gpu_seconds_of_a_line() -> None:
    # 1,000 prompt tokens of which 400 cached (costing 10% of a prompt token),
    # 200 output: (600 + 40) / 1,000 + 200 / 100 = 0.64 + 2 = 2.64 s.
    capacity = Capacity(1_000, 100, "test", cached_prompt_work=0.1)
    line = UsageLine(
        "m", num_prompt_tokens=1_000, num_cached_tokens=400, num_output_tokens=200
    )
    assert capacity.gpu_s(line) == pytest.approx(2.64)


def test_the_vllm_sample() -> None:
    capacity = from_file(SAMPLES / "vllm_bench_llama8b_h100.json")

    # 2,000 prompts x (1,024 + 256) tokens in 158.4 s, on the one GPU its
    # metadata names.
    assert capacity.is_blended
    assert capacity.prompt_tokens_per_s == pytest.approx(2_000 * 1_280 / 158.4)
    assert capacity.measured_output_share == pytest.approx(0.2)
    assert "illustrative" in capacity.source
    assert capacity.notes == ()


def test_gpus_and_goodput(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**RUN, "request_goodput": 8.0}))

    capacity = from_file(path, num_gpus=2)

    # 80% of requests met the SLO: 10,000 x 0.8 tokens/s over 2 GPUs.
    assert capacity.prompt_tokens_per_s == pytest.approx(4_000)
    assert any("goodput" in note for note in capacity.notes)


def test_unknown_gpu_count_is_said(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(RUN))
    capacity = from_file(path)
    assert capacity.prompt_tokens_per_s == 10_000
    assert "assumed 1" in capacity.notes[0]


def test_a_sweep_picks_the_fastest_run_within_the_slo(tmp_path: Path) -> None:
    path = tmp_path / "sweep.jsonl"
    runs = [
        {**RUN, "total_token_throughput": 5_000.0, "p99_ttft_ms": 200.0},
        {**RUN, "total_token_throughput": 9_000.0, "p99_ttft_ms": 450.0},
        {**RUN, "total_token_throughput": 12_000.0, "p99_ttft_ms": 1_500.0},
    ]
    path.write_text("\n".join(json.dumps(run) for run in runs) + "\n")

    assert from_file(path).prompt_tokens_per_s == 12_000
    assert from_file(path, slo_p99_ttft_ms=500).prompt_tokens_per_s == 9_000
    with pytest.raises(
        BreakEvenError, match=r"no run meets the SLO \(p99_ttft_ms ≤ 100\)"
    ):
        from_file(path, slo_p99_ttft_ms=100)


def test_a_result_without_throughput(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"duration": 10}))
    with pytest.raises(BreakEvenError, match="no total_token_throughput"):
        from_file(path)


def test_a_calibration(tmp_path: Path) -> None:
    path = tmp_path / "smol.json"
    calibration = Calibration(
        model="smol",
        hardware="h100-sxm",
        prompt_s_per_token=0.0001,
        completion_s_per_token=0.001,
        cached_prompt_s_per_token=0.00001,
        reference_concurrency=16,
        fit_residual_rel_rms=0.03,
        num_fit_points=12,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        tokenmill_version="0.1.0",
        engine_version="0.32.0",
    )
    save_calibration(calibration, path)

    capacity = from_file(path)

    assert capacity.prompt_tokens_per_s == pytest.approx(10_000)
    assert capacity.output_tokens_per_s == pytest.approx(1_000)
    assert capacity.cached_prompt_work == pytest.approx(0.1)


def test_a_mix_far_from_the_measurement_is_flagged() -> None:
    capacity = Capacity.blended(1_000, "test", measured_output_share=0.2)
    assert capacity.mix_warning(0.15) is None
    assert "decode costs more" in (capacity.mix_warning(0.05) or "")
    assert Capacity(1_000, 100, "test").mix_warning(0.05) is None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(BreakEvenError, match="above 0"):
        Capacity.blended(0, "test")


def test_a_tokenmill_bench_result_is_read_by_its_points(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    points = [
        {"total_token_throughput": 300.0, "output_throughput": 50.0,
         "max_concurrency": 4},
        {"total_token_throughput": 468.0, "output_throughput": 85.6,
         "max_concurrency": 16},
    ]  # fmt: skip
    path.write_text(json.dumps({"kind": "run", "points": points}))

    capacity = from_file(path)

    # A blended rate: the fastest point's prompt + output tokens per second.
    assert capacity.prompt_tokens_per_s == pytest.approx(468.0)
    assert "468" in capacity.source
