"""`bench run` and `bench history` end to end against the mock server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.cli import main
from bench.history import History
from bench.mock_server import MockServer
from tests.bench.mock_thread import mock_in_thread


@pytest.fixture
def mock() -> MockServer:
    return MockServer(token_delay_s=0.0005, cached_tokens=3)


@pytest.fixture
def mock_url(mock: MockServer) -> Iterator[str]:
    with mock_in_thread(mock) as url:
        yield url


def test_run_sweeps_points_and_prints_a_vllm_style_json_line_last(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run", "--url", mock_url + "/v1", "--model", "m",
            "--input-len", "16", "--output-len", "4", "--ignore-eos",
            "--concurrency", "1,4", "--request-rate", "inf", "--max-concurrency", "2",
            "--num-requests", "8", "--slo", "ttft_ms=10000,tpot_ms=10000",
            "--usd-per-hour", "3.6", "--hardware", "test-box", "--telemetry", "cpu",
            "--result-json", str(tmp_path / "result.json"), "--json",
            "--home", str(tmp_path),
        ]
    )  # fmt: skip

    assert code == 0
    out = capsys.readouterr().out
    assert "bench run: m" in out
    result = orjson.loads(out.strip().splitlines()[-1])
    assert result == orjson.loads((tmp_path / "result.json").read_bytes())
    assert result["environment"]["hardware"] == "test-box"
    assert [p["label"] for p in result["points"]] == [
        "concurrency 1",
        "concurrency 4",
        "rate inf/s, max 2",
    ]
    point = result["points"][1]
    assert point["completed"] == 8
    assert point["total_output_tokens"] == 32
    assert point["total_cached_tokens"] == 24
    assert point["request_goodput"] == pytest.approx(point["request_throughput"])
    for key in ("output_throughput", "median_ttft_ms", "p99_itl_ms", "mean_tpot_ms"):
        assert point[key] > 0
    assert point["output_usd_per_mtok"] == pytest.approx(
        0.001 / point["output_throughput"] * 1e6
    )
    assert result["points"][2]["request_rate"] == "inf"
    assert point["telemetry"][0]["device"] == "cpu"

    stored = History(tmp_path / "bench.sqlite3").runs()
    assert len(stored) == 1
    assert stored[0].model == "m"
    assert stored[0].hardware == "test-box"
    assert stored[0].result == result


def test_run_finds_the_model_and_reports_errors(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run", "--url", mock_url, "--num-requests", "3", "--output-len", "2",
            "--telemetry", "off", "--no-history", "--json",
        ]
    )  # fmt: skip

    assert code == 0
    result = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"]["model"] == "mock"
    assert result["points"][0]["errors_by_kind"] == {}

    code = main(
        [
            "run", "--url", mock_url, "--model", "fail", "--num-requests", "2",
            "--telemetry", "off", "--history-db", str(tmp_path / "h.sqlite3"),
        ]
    )  # fmt: skip

    assert code == 1
    assert "http_400 2" in capsys.readouterr().out


def test_history_lists_stored_runs(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--url", mock_url, "--model", "m", "--num-requests", "2"]
    args += ["--telemetry", "off", "--home", str(tmp_path)]
    main(["run", *args, "--output-len", "2"])
    main(["run", *args, "--workload", "mt-bench", "--output-len", "3"])
    capsys.readouterr()

    assert main(["history", "--home", str(tmp_path), "--json"]) == 0

    runs = orjson.loads(capsys.readouterr().out)
    assert [run["config"]["workload"]["kind"] for run in runs] == [
        "mt-bench",
        "synthetic",
    ]
    assert main(["history", "--home", str(tmp_path)]) == 0
    assert "bench history (2 runs)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "ttft=1"], "not KEY=MS"),
        (["--num-requests", "0"], "--num-requests must be >= 1"),
        (["--api-key-env", "TOKENMILL_TEST_UNSET_KEY"], "unset or empty"),
        (["--concurrency", "0"], "positive whole number"),
    ],
)
def test_bad_options_end_with_a_message_naming_them(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--url", "http://127.0.0.1:9", "--model", "m", "--no-history"]

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--telemetry", "off", *args])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_server_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--url", "http://127.0.0.1:9", "--no-history"])

    assert "check --url" in capsys.readouterr().err
