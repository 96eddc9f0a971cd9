"""The agreement benchmark's rounds against mock servers (vLLM's real benchmark
client included), and its ratios and tables on hand-made numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.mock_server import MockServer
from bench.vllm_agreement import (
    PATHS,
    AgreementConfig,
    Endpoint,
    agreement_result,
    ratios_table,
    row_of,
    run_rounds,
    run_seed,
    runs_table,
)
from tests.bench.mock_thread import mock_in_thread


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    """A word-level tokenizer: one token per word, as the mock counts them."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(200)}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    path = tmp_path / "tokenizer"
    path.mkdir()
    tokenizer.save(str(path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def test_rounds_run_both_tools_on_the_same_workload(
    tokenizer_dir: Path, tmp_path: Path
) -> None:
    engine = MockServer(api_key="key")
    gateway = MockServer()
    config = AgreementConfig(
        input_len=12, output_len=3, concurrency=2, num_prompts=4, rounds=2
    )
    seen: list[tuple[int, str]] = []

    with mock_in_thread(engine) as engine_url, mock_in_thread(gateway) as gateway_url:
        rows = run_rounds(
            {
                "engine": Endpoint(engine_url, "key"),
                "gateway": Endpoint(gateway_url, None),
            },
            "mock",
            tokenizer_dir,
            config,
            tmp_path,
            on_run=lambda index, path, _row: seen.append((index, path)),
        )

    assert seen == [
        (0, "vllm"),
        (0, "bench"),
        (0, "gateway"),
        (1, "bench"),
        (1, "gateway"),
        (1, "vllm"),
    ]
    # A warm-up of one request per client, then two runs of each tool.
    assert engine.stats.num_requests == 2 + 2 * 4 + 2 * 4
    assert gateway.stats.num_requests == 2 + 2 * 4
    body = engine.stats.last_body
    assert body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 3
    for path in PATHS:
        assert len(rows[path]) == 2
        for row in rows[path]:
            assert row["completed"] == 4
            assert row["failed"] == 0
            # The mock counts a prompt's words: both tools sent 12 "tokens".
            assert row["mean_prompt_tokens"] == 12
            assert row["output_throughput"] > 0
            assert row["median_ttft_ms"] > 0

    result = agreement_result(rows, config, "mock")
    json.dumps(result)
    assert result["ratios"]["bench_to_vllm"]["mean_prompt_tokens"]["median"] == 1


def test_every_run_gets_a_seed_of_its_own() -> None:
    config = AgreementConfig(rounds=3, seed=7)

    seeds = [
        run_seed(config, index, path)
        for index in range(config.rounds)
        for path in PATHS
    ]

    assert len(set(seeds)) == len(seeds)
    assert min(seeds) > 7


def _row(output_tps: float, ttft_ms: float, prompt_tokens: float) -> dict[str, Any]:
    return {
        "output_throughput": output_tps,
        "total_token_throughput": output_tps * 5,
        "median_ttft_ms": ttft_ms,
        "median_tpot_ms": 50.0,
        "mean_prompt_tokens": prompt_tokens,
        "completed": 48,
        "failed": 0,
        "duration_s": 10.0,
    }


def test_ratios_are_medians_of_per_round_ratios_against_the_targets() -> None:
    rows = {
        "vllm": [_row(100, 200, 256), _row(110, 220, 256), _row(90, 180, 256)],
        "bench": [_row(102, 230, 256), _row(108, 250, 256), _row(93, 200, 256)],
        "gateway": [_row(100, 231, 256), _row(106, 260, 256), _row(93, 210, 256)],
    }
    config = AgreementConfig(rounds=3)

    result = agreement_result(rows, config, "smollm2-135m")

    output = result["ratios"]["bench_to_vllm"]["output_throughput"]
    assert output["by_round"] == pytest.approx([1.02, 108 / 110, 93 / 90])
    assert output["median"] == pytest.approx(1.02)
    ttft = result["ratios"]["bench_to_vllm"]["median_ttft_ms"]
    assert ttft["median"] == pytest.approx(250 / 220)
    assert result["targets_met"] == {
        "bench_to_vllm_output_throughput_within_5_pct": True,
        "bench_to_vllm_median_ttft_ms_within_5_pct": False,
    }
    gateway = result["ratios"]["gateway_to_bench"]["output_throughput"]
    assert gateway["median"] == pytest.approx(106 / 108)
    assert result["paths"]["bench"]["spread"]["output_throughput"] == pytest.approx(
        (108 - 93) / 102
    )
    console = Console(record=True, width=200)
    console.print(runs_table(result))
    console.print(ratios_table(result))
    text = console.export_text()
    assert "bench run -> gateway" in text
    assert "1.020" in text


def test_row_reads_vllm_json_and_bench_points_alike() -> None:
    vllm_json = {
        "completed": 4,
        "failed": 1,
        "duration": 2.0,
        "total_input_tokens": 1030,
        "output_throughput": 128.0,
        "total_token_throughput": 643.0,
        "median_ttft_ms": 12.5,
        "median_tpot_ms": 3.25,
    }

    row = row_of(vllm_json)

    assert row["mean_prompt_tokens"] == 257.5
    assert row["failed"] == 1
    assert row["duration_s"] == 2.0
    assert (
        row_of({**vllm_json, "total_input_tokens": None})["mean_prompt_tokens"] is None
    )


def test_config_rejects_zero_prompts() -> None:
    with pytest.raises(ValueError, match="--num-prompts is 0"):
        AgreementConfig(num_prompts=0)
