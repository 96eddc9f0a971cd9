"""`bench compare` against the mock server, and its figures from made-up rounds."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.cli import main
from bench.compare import schedule
from bench.compare_summary import summarize, with_ratios
from bench.compare_variants import (
    REPORT_NAME,
    ModelFacts,
    model_facts,
    with_baseline_quality,
)
from bench.history import History
from bench.mock_server import MockServer
from tests.bench.mock_thread import mock_in_thread

# The slow "bf16" model takes 4 ms a token; the quantized ones answer at once.
_DELAYS_S = {"m-bf16": 0.004, "m-int8": 0.0, "m-int4": 0.0}


@pytest.fixture
def mock() -> MockServer:
    return MockServer(token_delay_s_by_model=_DELAYS_S)


@pytest.fixture
def mock_url(mock: MockServer) -> Iterator[str]:
    with mock_in_thread(mock) as url:
        yield url


@pytest.fixture(autouse=True)
def _no_models_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checkout's models.yaml would otherwise be read from the working dir.
    monkeypatch.delenv("TOKENMILL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _report(name: str, source: str) -> dict[str, Any]:
    # The keys quantize/run.py writes (`_build_report`) that compare reads.
    return {
        "name": name,
        "source": {"name": source, "checkpoint": "/models/" + source},
        "size": {"before_bytes": 4000, "after_bytes": 1000, "ratio": 0.25},
        "gate": {
            "verdict": "pass",
            "texts": [
                {"name": "wiki", "ppl_increase_pct": 1.5, "mean_kl": 0.02,
                 "top1_agreement": 0.93, "ppl_before": 10.0, "ppl_after": 10.15},
                {"name": "code", "ppl_increase_pct": 3.25, "mean_kl": 0.05,
                 "top1_agreement": 0.88, "ppl_before": 4.0, "ppl_after": 4.13},
            ],
        },
        "models_yaml_entry": {"name": name, "precision": "int4"},
    }  # fmt: skip


def _checkpoint(directory: Path, num_bytes: int, report: dict | None = None) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"\0" * num_bytes)
    (directory / "config.json").write_text("{}")  # not a weight file
    if report is not None:
        (directory / REPORT_NAME).write_bytes(orjson.dumps(report))
    return directory


def test_schedule_rotates_which_model_goes_first() -> None:
    assert schedule(["a", "b", "c"], 4) == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_compare_alternates_models_and_reports_speed_cost_size_and_quality(
    mock: MockServer,
    mock_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bf16 = _checkpoint(tmp_path / "bf16", 4000)
    int8 = _checkpoint(tmp_path / "int8", 2000, _report("m-int8", "m-bf16"))
    int4 = _checkpoint(tmp_path / "int4", 1000)
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        f"  - {{name: m-bf16, source: {bf16}, hardware: {{name: box, "
        "usd_per_hour: 3.6}}\n"
        f"  - {{name: m-int8, source: {int8}, precision: int8, "
        "quantization: compressed-tensors}\n"
    )

    code = main(
        [
            "compare", "--url", mock_url + "/v1",
            "--models", "m-bf16,m-int8,m-int4", "--checkpoint", f"m-int4={int4}",
            "--config", str(config), "--concurrency", "2", "--num-requests", "6",
            "--rounds", "3", "--input-len", "8", "--output-len", "4",
            "--ignore-eos", "--home", str(tmp_path),
            "--result-json", str(tmp_path / "compare.json"),
        ]
    )  # fmt: skip

    assert code == 0
    assert "bench compare vs m-bf16" in capsys.readouterr().out
    # Warm-up and measured requests of one point share a model, so each point
    # shows as one entry; the first model rotates every round.
    assert mock.stats.model_order == [
        model
        for names in schedule(["m-bf16", "m-int8", "m-int4"], 3)
        for model in names
    ]
    result = orjson.loads((tmp_path / "compare.json").read_bytes())
    assert result["kind"] == "compare"
    assert result["baseline"] == result["config"]["baseline"] == "m-bf16"
    assert result["config"]["models"] == ["m-bf16", "m-int8", "m-int4"]
    assert set(result["environment"]) == {
        "git_revision", "tokenmill_version", "engine_version", "hardware",
        "usd_per_hour", "host",
    }  # fmt: skip
    bf16_v, int8_v, int4_v = result["variants"]
    assert [v["model"] for v in result["variants"]] == ["m-bf16", "m-int8", "m-int4"]
    assert [v["precision"] for v in result["variants"]] == ["bf16", "int8", None]

    # Speed: medians of the rounds; the slow model is the 1.0 the others beat.
    assert [p["position"] for p in bf16_v["rounds"]] == [0, 2, 1]
    for variant in result["variants"]:
        assert len(variant["rounds"]) == 3
        assert variant["completed"] == 18
        assert variant["output_throughput"] == statistics.median(
            p["output_throughput"] for p in variant["rounds"]
        )
        assert variant["median_tpot_ms"] is not None
    assert bf16_v["throughput_ratio"] == 1.0
    assert int8_v["throughput_ratio"] > 1.5
    assert int4_v["throughput_ratio"] > 1.5

    # Cost: models.yaml's $3.6/hour is $0.001/s; m-int4 has no price.
    assert bf16_v["usd_per_hour_source"] == "models.yaml"
    assert bf16_v["usd_per_m_output_tokens"] == pytest.approx(
        statistics.median(
            0.001 / p["output_throughput"] * 1e6 for p in bf16_v["rounds"]
        )
    )
    assert bf16_v["usd_per_m_input_tokens"] > bf16_v["usd_per_m_output_tokens"] / 10
    assert int8_v["usd_per_m_output_tokens"] is None
    assert int4_v["usd_per_m_output_tokens"] is None

    # Size and quality: the report's figures; no report, no quality.
    assert [v["checkpoint_bytes"] for v in result["variants"]] == [4000, 2000, 1000]
    assert int8_v["checkpoint_bytes_ratio"] == 0.5
    assert int4_v["checkpoint_bytes_ratio"] == 0.25
    assert int8_v["quantize_size"]["after_bytes"] == 1000
    assert int8_v["quality"]["gate_verdict"] == "pass"
    assert int8_v["quality"]["texts"]["code"] == {
        "ppl_increase_pct": 3.25,
        "mean_kl": 0.05,
        "top1_agreement": 0.88,
    }
    assert bf16_v["quality"]["texts"]["wiki"]["ppl_increase_pct"] == 0.0
    assert int4_v["quality"] is None

    stored = History(tmp_path / "bench.sqlite3").runs(kind="compare")
    assert [run.model for run in stored] == ["m-bf16"]
    assert stored[0].result == result
    assert main(["history", "--home", str(tmp_path), "--kind", "compare"]) == 0
    assert "m-int8" in capsys.readouterr().out


def test_usd_per_hour_option_prices_every_model(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "compare", "--url", mock_url, "--models", "m-int8,m-int4",
            "--baseline", "m-int4", "--num-requests", "3", "--rounds", "1",
            "--output-len", "2", "--usd-per-hour", "7.2", "--no-history", "--json",
            "--home", str(tmp_path),
        ]
    )  # fmt: skip

    assert code == 0
    result = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["baseline"] == "m-int4"
    for variant in result["variants"]:
        (point,) = variant["rounds"]
        assert variant["usd_per_hour_source"] == "--usd-per-hour"
        assert variant["usd_per_m_output_tokens"] == pytest.approx(
            0.002 / point["output_throughput"] * 1e6
        )
        assert variant["usd_per_m_input_tokens"] == pytest.approx(
            0.002 / point["input_throughput"] * 1e6
        )
    assert result["variants"][1]["usd_per_m_output_tokens_ratio"] == 1.0


def test_a_runtime_method_report_is_found_under_home_models(tmp_path: Path) -> None:
    # bitsandbytes and fp8 serve the source checkpoint; the report sits in
    # HOME/models/NAME instead.
    source = _checkpoint(tmp_path / "source", 3000)
    _checkpoint(tmp_path / "home" / "models" / "m-fp8", 0, _report("m-fp8", "m"))

    facts = model_facts("m-fp8", None, tmp_path, tmp_path / "home", source)

    assert facts.checkpoint_bytes == 3000
    assert facts.precision == "int4"  # from the report's models.yaml entry
    assert facts.quality is not None
    assert facts.quality["reference_model"] == "m"
    assert facts.report_path == tmp_path / "home" / "models" / "m-fp8" / REPORT_NAME


def test_an_unreadable_report_leaves_quality_unknown_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _checkpoint(tmp_path / "broken", 10)
    (broken / REPORT_NAME).write_text('{"gate": {"verdict": "pass"}}')
    plain = _checkpoint(tmp_path / "plain", 10)

    with caplog.at_level(logging.WARNING):
        facts = [
            model_facts("broken", None, tmp_path, tmp_path, broken),
            model_facts("plain", None, tmp_path, tmp_path, plain),
        ]

    assert [f.quality for f in facts] == [None, None]
    assert "lacks gate.texts" in caplog.text
    # With no report anywhere, the baseline has nothing to be compared on either.
    assert with_baseline_quality(facts, "plain")[1].quality is None


def _round(output_throughput: float, ttft_ms: float | None) -> dict[str, Any]:
    usd_per_s = 0.001
    return {
        "output_throughput": output_throughput,
        "total_token_throughput": 2 * output_throughput,
        "request_throughput": output_throughput / 10,
        "median_ttft_ms": ttft_ms,
        "median_tpot_ms": None if ttft_ms is None else ttft_ms / 10,
        "completed": 10 if output_throughput else 0,
        "failed": 0 if output_throughput else 10,
        "output_usd_per_mtok": (
            usd_per_s / output_throughput * 1e6 if output_throughput else None
        ),
        "input_usd_per_mtok": None,
    }


def test_summary_takes_medians_ranges_and_prices_a_failed_round_as_unknown() -> None:
    facts = ModelFacts("m", usd_per_hour=3.6, checkpoint_bytes=100)
    rounds = [_round(100.0, 50.0), _round(0.0, None), _round(200.0, 30.0)]

    summary = summarize(facts, rounds)

    assert summary["output_throughput"] == 100.0
    assert summary["ranges"]["output_throughput"] == [0.0, 200.0]
    # Latency over the rounds that measured it.
    assert summary["median_ttft_ms"] == 40.0
    assert summary["ranges"]["median_ttft_ms"] == [30.0, 50.0]
    assert summary["failed"] == 10
    # $/M over rounds: 10, inf (no tokens), 5 -> 10; input never measured.
    assert summary["usd_per_m_output_tokens"] == pytest.approx(10.0)
    assert summary["usd_per_m_input_tokens"] is None

    slower = summarize(ModelFacts("s", usd_per_hour=3.6), [_round(50.0, 80.0)])
    variants = with_ratios([summary, slower], "m")
    assert variants[1]["throughput_ratio"] == 0.5
    assert variants[1]["usd_per_m_output_tokens_ratio"] == pytest.approx(2.0)
    assert variants[1]["checkpoint_bytes_ratio"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "x"], "--baseline 'x' is not in --models"),
        (["--checkpoint", "a"], "is not NAME=DIR"),
        (["--checkpoint", "z=/"], "'z', which is not in --models"),
        (["--checkpoint", "a=/no/such/dir"], "is not a directory"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--models", "a,a"], "names a model twice"),
        (["--config", "/no/such/models.yaml"], "cannot read it"),
    ],
)
def test_bad_options_end_with_a_message_naming_them(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compare", "--url", "http://127.0.0.1:9", "--models", "a,b"]

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--no-history", *args])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
