"""Each bill format read from a realistic sample; bad files give clear errors."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from server.breakeven.bills import read_bill
from server.breakeven.errors import BillError
from server.breakeven.usage import HOURS_PER_MONTH
from server.ledger import Ledger
from server.records import RequestRecord
from tests.server.breakeven.conftest import SAMPLES

NOVEMBER_MONTHS = 30 * 24 / HOURS_PER_MONTH  # 720 h of a 730-hour month


def test_openai_usage_api_page() -> None:
    path = SAMPLES / "openai_usage_completions.json"
    bill = read_bill(str(path))
    page = json.loads(path.read_text())
    results = [r for bucket in page["data"] for r in bucket["results"]]

    assert bill.format == "openai-usage-api"
    assert bill.num_months == pytest.approx(NOVEMBER_MONTHS)
    assert len(bill.lines) == len(results)
    # input_tokens already holds the cached ones.
    assert sum(x.num_prompt_tokens for x in bill.lines) == sum(
        r["input_tokens"] for r in results
    )
    assert sum(x.num_cached_tokens for x in bill.lines) == sum(
        r["input_cached_tokens"] for r in results
    )
    assert bill.num_requests == sum(r["num_model_requests"] for r in results)
    assert {x.model for x in bill.lines if x.is_batch} == {"gpt-4o-mini-2024-07-18"}
    assert bill.measured_peak_to_average is None  # daily buckets only


def test_openai_usage_api_without_model_grouping(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    result = {
        "object": "organization.usage.completions.result",
        "input_tokens": 5,
        "output_tokens": 1,
        "num_model_requests": 1,
        "model": None,
    }
    bucket = {
        "object": "bucket",
        "start_time": 0,
        "end_time": 86400,
        "results": [result],
    }
    path.write_text(json.dumps({"object": "page", "data": [bucket], "has_more": False}))

    with pytest.raises(
        BillError, match=r"data\[0\]\.results\[0\]: no model.*group_by=model"
    ):
        read_bill(str(path))


def test_openai_pages_as_a_list_and_a_warning_for_missing_ones(tmp_path: Path) -> None:
    page = json.loads((SAMPLES / "openai_usage_completions.json").read_text())
    first = {**page, "data": page["data"][:10], "has_more": True}
    rest = {**page, "data": page["data"][10:], "has_more": True}
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([first, rest]))

    bill = read_bill(str(path))

    assert len(bill.lines) == sum(len(b["results"]) for b in page["data"])
    assert any("has_more" in note for note in bill.notes)


def test_openai_dashboard_export() -> None:
    path = SAMPLES / "openai_completions_usage_export.csv"
    bill = read_bill(str(path))
    with path.open() as file:
        rows = [row for row in csv.DictReader(file) if row["model"]]

    assert bill.format == "openai-usage-export"
    assert bill.num_months == pytest.approx(7 * 24 / HOURS_PER_MONTH)
    assert len(bill.lines) == len(rows)
    # Counts written as "12642000.0" are read as whole numbers.
    assert bill.lines[0].num_prompt_tokens == int(float(rows[0]["input_tokens"]))
    assert bill.num_requests == sum(int(float(r["num_model_requests"])) for r in rows)
    assert not any(line.is_batch for line in bill.lines)
    assert any("2 rows without usage" in note for note in bill.notes)


def test_anthropic_usage_report() -> None:
    path = SAMPLES / "anthropic_usage_report.json"
    bill = read_bill(str(path))
    first = json.loads(path.read_text())["data"][0]["results"][0]

    assert bill.format == "anthropic-usage-report"
    assert bill.num_months == pytest.approx(168 / HOURS_PER_MONTH)
    line = bill.lines[0]
    writes = first["cache_creation"]
    # Total input is the sum of Anthropic's four parts.
    assert line.num_prompt_tokens == (
        first["uncached_input_tokens"]
        + first["cache_read_input_tokens"]
        + writes["ephemeral_5m_input_tokens"]
        + writes["ephemeral_1h_input_tokens"]
    )
    assert line.num_cache_write_1h_tokens == writes["ephemeral_1h_input_tokens"]
    assert line.model == "claude-sonnet-4-20250514"
    assert {x.model for x in bill.lines if x.is_batch} == {"claude-haiku-4-5-20251001"}
    assert bill.num_requests is None
    # Hourly buckets: the busiest interactive hour against the mean hour.
    assert bill.measured_peak_to_average == pytest.approx(3.6, abs=0.3)


def test_anthropic_console_export() -> None:
    path = SAMPLES / "anthropic_console_usage.csv"
    bill = read_bill(str(path))
    with path.open() as file:
        rows = list(csv.DictReader(file))

    assert bill.format == "anthropic-console-export"
    assert bill.num_months == pytest.approx(NOVEMBER_MONTHS)
    assert len(bill.lines) == len(rows)
    assert sum(x.num_cached_tokens for x in bill.lines) == sum(
        int(r["usage_input_tokens_cache_read"]) for r in rows
    )
    assert sum(x.is_batch for x in bill.lines) == sum(
        r["usage_type"] == "batch" for r in rows
    )


def test_generic_csv() -> None:
    bill = read_bill(str(SAMPLES / "generic_bill.csv"))

    assert bill.format == "generic-csv"
    assert bill.num_months == 3  # three calendar months, whatever their length
    assert all(line.billed_cost_usd is not None for line in bill.lines)
    assert bill.success_rate == pytest.approx(0.912, abs=0.002)


def test_months_override() -> None:
    bill = read_bill(str(SAMPLES / "generic_bill.csv"), months=6)
    assert bill.num_months == 6
    assert "--months" in bill.notes[-1]


async def _fill_ledger(path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{path}")
    hour_s = 1_793_577_600.0  # 2026-11-02 00:00 UTC
    for index in range(30):
        record = RequestRecord(
            request_id=f"r{index}",
            model="smollm2-135m",
            endpoint="/v1/chat/completions",
            is_stream=False,
            started_at=hour_s + index * 3600,  # one request an hour
            status="error" if index == 0 else "ok",
            num_prompt_tokens=100,
            num_cached_tokens=40,
            num_completion_tokens=10,
            duration_s=1.0,
        )
        await ledger.submit(record)
    await ledger.set_feedback("r1", "success")
    await ledger.set_feedback("r2", "failure")
    await ledger.close()


def test_ledger_by_path_and_url(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    asyncio.run(_fill_ledger(path))

    for source in (str(path), f"sqlite:///{path}"):
        bill = read_bill(source)
        assert bill.format == "tokenmill-ledger"
        assert len(bill.lines) == 30  # one per model and hour
        assert sum(x.num_prompt_tokens for x in bill.lines) == 3_000
        assert sum(x.num_cached_tokens for x in bill.lines) == 1_200
        assert bill.num_requests == 30
        # Feedback on two requests, one good: it decides over the status.
        assert bill.success_rate == pytest.approx(0.5)
        # The same tokens every hour: a flat load.
        assert bill.measured_peak_to_average == pytest.approx(1.0)
        # From the first request's hour to the end of the last request.
        assert bill.num_months == pytest.approx((29 * 3600 + 1) / 3600 / 730)


def test_missing_ledger_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sqlite3"
    with pytest.raises(BillError, match="no ledger there"):
        read_bill(f"sqlite:///{path}")
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "month,model,input_tokens,output_tokens\n2026-11,gpt-4o,10,1\n",
            r"missing column\(s\) 'cached_input_tokens'",
        ),
        (
            "month,model,input_tokens,cached_input_tokens,output_tokens\n"
            "2026-11,gpt-4o,ten,0,1\n",
            r"row 2: column 'input_tokens' is 'ten', not a whole number",
        ),
        (
            "month,model,input_tokens,cached_input_tokens,output_tokens\n"
            "2026-11,gpt-4o,10,20,1\n",
            r"row 2: cached_input_tokens \(20\).*must count all prompt tokens",
        ),
        (
            "month,model,input_tokens,cached_input_tokens,output_tokens\n"
            "Nov 2026,gpt-4o,10,2,1\n",
            r"row 2: column 'month' is 'Nov 2026'; write it as YYYY-MM",
        ),
        (
            "month,model,input_tokens,cached_input_tokens,output_tokens\n"
            "2026-11,gpt-4o,10,2,1,7\n",
            r"row 2 has more cells than the header",
        ),
        ("when,what\n2026-11,x\n", r"cannot tell which bill this is"),
        ("", r"the file is empty"),
    ],
)
def test_bad_csv_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bill.csv"
    path.write_text(text)
    with pytest.raises(BillError, match=message):
        read_bill(str(path))


def test_a_given_format_names_its_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "bill.csv"
    path.write_text("start_time,end_time,model\n0,86400,gpt-4o\n")
    with pytest.raises(BillError, match=r"missing column\(s\) 'input_tokens'"):
        read_bill(str(path), "openai")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"data": [', r"not valid JSON \(line 1"),
        ('{"object": "list", "items": []}', r"not a usage report tokenmill knows"),
        (
            '{"data": [{"starting_at": "yesterday", "ending_at": "2026-11-02", '
            '"results": []}]}',
            r"data\[0\]: column 'starting_at' is 'yesterday', not a time",
        ),
        (
            '{"data": [{"starting_at": "2026-11-01T00:00:00Z", "ending_at": '
            '"2026-11-02T00:00:00Z", "results": [{"model": "claude-haiku-4-5", '
            '"output_tokens": 5}]}]}',
            r"results\[0\]: column 'uncached_input_tokens' is missing",
        ),
    ],
)
def test_bad_json_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bill.json"
    path.write_text(text)
    with pytest.raises(BillError, match=message):
        read_bill(str(path))


def test_missing_file() -> None:
    with pytest.raises(BillError, match="no such file"):
        read_bill("/nonexistent/bill.csv")
