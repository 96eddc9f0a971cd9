"""`bench nightly` end to end against the mock server: history, verdicts, report.

The mock's per-token delay sets the pace, so a run's figures are the delay plus
a millisecond or so of overhead, more on a busy machine (up to ~10 ms with every
core taken). A tolerance of 60% over the recent range leaves room for that, and
the injected slowdowns (4x and 6x: throughput -75%, latencies +300%) are far
beyond it.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from bench import nightly_report
from bench.cli import main
from bench.history import History
from bench.mock_server import MockServer
from bench.regression import is_baseline
from tests.bench.mock_thread import mock_in_thread

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOKEN_DELAY_S = 0.02


def _suite(
    tmp_path: Path,
    url: str,
    concurrency: list[int],
    num_requests: int,
    model: str = "m",
    **regression: object,
) -> Path:
    suite = {
        "name": "mock-nightly",
        "defaults": {
            "url": url + "/v1",
            "model": model,
            "hardware": "test-box",
            "telemetry": "off",
        },
        "regression": {
            "tolerance_pct": 60,
            "watch": ["output_throughput", "median_ttft_ms", "median_tpot_ms"],
            **regression,
        },
        "benchmarks": [
            {
                "name": "decode",
                "workload": {"input_len": 8, "output_len": 4, "ignore_eos": True},
                "concurrency": concurrency,
                "num_requests": num_requests,
            }
        ],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _nightly(suite: Path, report_dir: Path, *options: str) -> int:
    history = suite.parent / "bench.sqlite3"
    return main(
        [
            "nightly",
            str(suite),
            "--history-db",
            str(history),
            "--report-dir",
            str(report_dir),
            *options,
        ]
    )


@pytest.fixture
def skip_plots(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Leaves the PNGs empty where a test is not about them: drawing costs ~1 s."""
    monkeypatch.setattr(nightly_report, "curve_png", lambda outcome: b"")
    monkeypatch.setattr(nightly_report, "history_png", lambda outcome, watch: b"")
    return monkeypatch


def _verdict(report_dir: Path) -> str:
    summary = orjson.loads((report_dir / "summary.json").read_bytes())
    return str(summary["benchmarks"][0]["verdict"])


def test_unchanged_reruns_pass_and_an_injected_slowdown_fails(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    skip_plots: pytest.MonkeyPatch,
) -> None:
    mock = MockServer(token_delay_s=TOKEN_DELAY_S)
    with mock_in_thread(mock) as url:
        suite = _suite(tmp_path, url, [1, 2], 4, history_runs=3, min_history=2)
        codes = [_nightly(suite, tmp_path / f"night-{i}") for i in range(3)]
        skip_plots.undo()  # the last night's plots are checked
        capsys.readouterr()
        mock.token_delay_s = 4 * TOKEN_DELAY_S
        slow_code = _nightly(suite, tmp_path / "slow")
    out = capsys.readouterr().out

    assert codes == [0, 0, 0]
    verdicts = [_verdict(tmp_path / f"night-{i}") for i in range(3)]
    assert verdicts == ["no-baseline", "no-baseline", "ok"]
    assert slow_code == 1
    assert _verdict(tmp_path / "slow") == "regression"
    assert "median_tpot_ms at concurrency 1" in out

    report = (tmp_path / "slow" / "report.md").read_text()
    assert report.startswith("# bench nightly: mock-nightly — REGRESSION")
    assert "worse than the worst of the last 3 runs" in report
    for name in ("median_tpot_ms", "output_throughput", "median_ttft_ms"):
        assert f"{name} at concurrency 2" in report
    for png in ("decode-curve.png", "decode-history.png"):
        assert f"]({png})" in report
        assert (tmp_path / "slow" / png).read_bytes().startswith(PNG_MAGIC)

    runs = History(tmp_path / "bench.sqlite3").runs()
    assert [(r.config["suite"], r.config["benchmark"]) for r in runs] == [
        ("mock-nightly", "decode")
    ] * 4
    assert runs[0].hardware == "test-box"
    # The regressed run is stored, but is no baseline for later nights.
    assert [is_baseline(r.result) for r in runs] == [False, True, True, True]


def test_a_regression_keeps_failing_until_accepted(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    skip_plots: pytest.MonkeyPatch,
) -> None:
    mock = MockServer(token_delay_s=0.005)
    with mock_in_thread(mock) as url:
        suite = _suite(tmp_path, url, [1], 2, history_runs=1, min_history=1)
        first = _nightly(suite, tmp_path / "fast")
        mock.token_delay_s = 0.03
        codes = [_nightly(suite, tmp_path / f"slow-{i}") for i in range(2)]
        accepted = _nightly(suite, tmp_path / "accept", "--accept", "--json")
        json_line = capsys.readouterr().out.strip().splitlines()[-1]
        after = _nightly(suite, tmp_path / "after")

    assert first == 0
    assert codes == [1, 1]
    assert accepted == 0
    assert orjson.loads(json_line)["benchmarks"][0]["verdict"] == "accepted"
    assert (
        "accepted as the new baseline"
        in (tmp_path / "accept" / "report.md").read_text()
    )
    assert after == 0
    assert _verdict(tmp_path / "after") == "ok"


def test_failed_requests_fail_the_night_without_any_history(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    skip_plots: pytest.MonkeyPatch,
) -> None:
    with mock_in_thread(MockServer()) as url:
        suite = _suite(tmp_path, url, [1], 2, model="fail")
        code = _nightly(suite, tmp_path / "report")

    assert code == 1
    out = capsys.readouterr().out
    assert "failed at concurrency 1: 2 requests failed" in out
    assert "**ERRORS**" in (tmp_path / "report" / "report.md").read_text()


def test_a_bad_suite_exits_2_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("benchmarks: [{name: a, concurrency: [1], num_request: 5}]\n")

    with pytest.raises(SystemExit) as exit_info:
        _nightly(suite, tmp_path / "report")

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{suite}: benchmark 'a': num_request: unknown key" in err
    assert not (tmp_path / "report").exists()
