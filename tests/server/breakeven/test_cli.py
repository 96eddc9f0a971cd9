"""`report breakeven` and `report whatif` from options to files, as wired in cli."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from bench.history import History
from server.breakeven import (
    BreakEvenError,
    add_arguments,
    add_whatif_arguments,
    cmd_report_breakeven,
    cmd_report_whatif,
)
from server.cli import _add_settings_options
from server.ledger import Ledger
from server.records import RequestRecord
from tests.server.breakeven.conftest import SAMPLES
from tests.server.breakeven.test_bench_history import SWEEP, run_result
from tests.server.breakeven.test_quantized import COMPARE

OPENAI_BILL = str(SAMPLES / "openai_usage_completions.json")
BENCH = str(SAMPLES / "vllm_bench_llama8b_h100.json")


def run(tmp_path: Path, *argv: str) -> int:
    """Parse as `tokenmill report …` would, then run the command."""
    parser = argparse.ArgumentParser(prog="tokenmill report")
    reports = parser.add_subparsers(dest="report", required=True)
    for name, add, command in (
        ("breakeven", add_arguments, cmd_report_breakeven),
        ("whatif", add_whatif_arguments, cmd_report_whatif),
    ):
        sub = reports.add_parser(name)
        _add_settings_options(sub)
        add(sub)
        sub.set_defaults(run=command)
    config = tmp_path / "models.yaml"
    if not config.exists():
        config.write_text(
            "models:\n  - name: smol\n    source: /nowhere\n"
            "    api_reference: openai/gpt-4o-mini\n"
        )
    args = parser.parse_args([*argv, "--home", str(tmp_path), "--config", str(config)])
    return int(args.run(args))


def test_markdown_report_with_its_plot(tmp_path: Path) -> None:
    output = tmp_path / "report.md"
    code = run(
        tmp_path,
        "breakeven",
        "--bill",
        OPENAI_BILL,
        "--capacity-file",
        BENCH,
        "--candidate",
        "llama-3.1-8b",
        "--output",
        str(output),
    )

    assert code == 0
    text = output.read_text()
    assert text.startswith("# Break-even: llama-3.1-8b (bf16) on h100-sxm")
    assert "![Monthly cost" in text
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_html_report(tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    run(
        tmp_path,
        "breakeven",
        "--bill",
        OPENAI_BILL,
        "--capacity-tokens-per-s",
        "16000",
        "--format",
        "html",
        "--output",
        str(output),
    )
    assert "data:image/png;base64," in output.read_text()


def test_owned_json_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        tmp_path,
        "breakeven",
        "--bill",
        str(SAMPLES / "generic_bill.csv"),
        "--prompt-tokens-per-s",
        "40000",
        "--output-tokens-per-s",
        "3000",
        "--owned",
        "--purchase-usd",
        "35000",
        "--format",
        "json",
    )
    data = json.loads(capsys.readouterr().out)

    # The generic sample states its own cost, which becomes the API's.
    assert data["api"]["monthly_usd"] == data["api"]["billed_monthly_usd"]
    assert (
        data["self_hosted"]["upfront_usd"]
        == 35_000 * data["self_hosted"]["num_gpus_peak"]
    )
    # Its successful_requests give the API's success rate; self-hosting's is
    # assumed equal, and said so.
    rates = {a["what"]: a for a in data["assumptions"]}
    assert rates["success rate, API"]["source"] == "the bill's successful_requests"
    assert "assumed equal" in rates["success rate, self-hosted"]["source"]
    assert data["self_hosted"]["usd_per_successful_request"] is not None


def test_whatif_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(
        tmp_path,
        "whatif",
        "--bill",
        OPENAI_BILL,
        "--cache-hit-rate",
        "0.6",
        "--route-share",
        "0.3",
        "--route-to",
        "openai/gpt-4o-mini",
        "--format",
        "json",
    )
    data = json.loads(capsys.readouterr().out)
    assert [o["lever"] for o in data["alone"]] == ["prefix cache", "routing"]
    assert data["combined"][-1]["api_monthly_usd"] < data["baseline"]["api_monthly_usd"]


def test_ledger_bill_priced_by_models_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"

    async def fill() -> None:
        ledger = Ledger.open(url)
        record = RequestRecord(
            "r1",
            "smol",
            "/v1/chat/completions",
            False,
            1.79e9,
            num_prompt_tokens=1_000,
            num_completion_tokens=100,
        )
        await ledger.submit(record)
        await ledger.close()

    asyncio.run(fill())
    run(
        tmp_path,
        "whatif",
        "--bill",
        "ledger",
        "--ledger-url",
        url,
        "--cache-hit-rate",
        "0.5",
        "--format",
        "json",
        "--since",
        "1700000000",
    )
    data = json.loads(capsys.readouterr().out)
    # smol's api_reference is openai/gpt-4o-mini: 1,000 x $0.15 + 100 x $0.60 per
    # million = $0.00021 in the one hour the ledger covers, 730 such a month.
    assert data["baseline"]["api_monthly_usd"] == pytest.approx(0.00021 * 730)


def test_missing_configured_ledger_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(BreakEvenError, match="no ledger there"):
        run(
            tmp_path,
            "whatif",
            "--bill",
            "ledger",
            "--ledger-url",
            f"sqlite:///{path}",
            "--cache-hit-rate",
            "0.5",
        )
    assert not path.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no capacity"),
        (
            ["--capacity-tokens-per-s", "1", "--capacity-file", BENCH],
            "capacity given twice",
        ),
        (["--prompt-tokens-per-s", "1"], "go together"),
        (["--capacity-tokens-per-s", "1", "--owned"], "--owned needs --purchase-usd"),
        (["--capacity-tokens-per-s", "1", "--purchase-usd", "1"], "add --owned"),
        (
            [
                "--capacity-tokens-per-s",
                "1",
                "--ops-multiplier",
                "0.3",
                "--ops-hours-per-month",
                "10",
            ],
            "not both",
        ),
        (
            ["--capacity-tokens-per-s", "1", "--model-map", "gpt-4o"],
            "--model-map 'gpt-4o'",
        ),
        (["--capacity-tokens-per-s", "1", "--peak-to-average", "0.5"], "below 1"),
        (
            ["--capacity-tokens-per-s", "1", "--owned", "--gpu-usd-per-hour", "2"],
            "rental price",
        ),
    ],
)
def test_option_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(BreakEvenError, match=message):
        run(tmp_path, "breakeven", "--bill", OPENAI_BILL, *argv)


def test_capacity_from_the_default_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --home is tmp_path, so the default history is tmp_path/bench.sqlite3.
    history = History(tmp_path / "bench.sqlite3")
    history.record(run_result("2026-11-02T10:00:00+00:00", "smol", "h100", "b", SWEEP))
    history.record(run_result("2026-11-03T10:00:00+00:00", "smol", "l40s", "c", SWEEP))
    run(
        tmp_path,
        "breakeven",
        "--bill",
        OPENAI_BILL,
        "--capacity-from-history",
        "--candidate",
        "smol",
        "--capacity-hardware",
        "h100",
        "--slo-p99-ttft-ms",
        "500",
        "--format",
        "json",
    )
    data = json.loads(capsys.readouterr().out)

    capacity = {a["what"]: a for a in data["assumptions"]}["capacity"]
    assert capacity["value"].startswith("5,000 tokens/s per GPU")
    assert "run 1 of smol" in capacity["source"]
    assert "point 'concurrency 8'" in capacity["source"]


def test_whatif_factor_from_a_compare_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compare = tmp_path / "compare.json"
    compare.write_text(json.dumps(COMPARE))
    history = tmp_path / "elsewhere.sqlite3"
    History(history).record(
        run_result("2026-11-02T10:00:00+00:00", "smol", "h100", "b", SWEEP)
    )
    run(
        tmp_path,
        "whatif",
        "--bill",
        OPENAI_BILL,
        "--quantized-from-compare",
        str(compare),
        "--capacity-from-history",
        str(history),
        "--capacity-model",
        "smol",
        "--format",
        "json",
    )
    data = json.loads(capsys.readouterr().out)

    assert data["quantization"]["variant"] == "smol-int8"
    assert data["alone"][0]["setting"].startswith("int8, capacity x1.25")
    # The sample bill fits one GPU either way; the lever is priced all the same.
    assert data["alone"][0]["self_hosted_monthly_usd"] is not None
    assert any("concurrency 4, not at your latency SLO" in n for n in data["notes"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--capacity-from-history"], "needs the model the benchmark measured"),
        (
            ["--capacity-tokens-per-s", "1", "--capacity-hardware", "h100"],
            "add --capacity-from-history",
        ),
        (
            ["--quantized-variant", "smol-int4", "--cache-hit-rate", "0.5"],
            "add --quantized-from-compare",
        ),
        (
            ["--quantized-from-compare", "c.json", "--quantized-from-history"],
            "keep one source of the quantization factor",
        ),
        (
            ["--quantized-from-history", "--capacity-model", "smol"],
            "no bench history there",
        ),
    ],
)
def test_history_option_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(BreakEvenError, match=message):
        run(tmp_path, "whatif", "--bill", OPENAI_BILL, *argv)
