"""`tokenmill report usage`: the ledger's usage and cost as a table, CSV or JSON."""

from __future__ import annotations

import asyncio
import csv
import sys
import time
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from server.config import ConfigError, ModelsFile
from server.ledger import Ledger
from server.metering_routes import parse_time
from server.pricing import ModelPricing
from server.settings import Settings
from server.usage_report import ReportError, UsageReport, build_report, parse_group_by

_COLUMNS = [
    ("requests", "num_requests", "{:d}"),
    ("prompt tok", "num_prompt_tokens", "{:,d}"),
    ("cached tok", "num_cached_tokens", "{:,d}"),
    ("output tok", "num_completion_tokens", "{:,d}"),
    ("cache hit", "cache_hit_rate", "{:.1%}"),
    ("cache saved $", "cache_savings_usd", "{:.6f}"),
    ("list $", "list_cost_usd", "{:.6f}"),
    ("absorbed $", "absorbed_cost_usd", "{:.6f}"),
    ("API-equiv $", "api_equivalent_cost_usd", "{:.6f}"),
    ("savings $", "savings_usd", "{:.6f}"),
    ("p50 TTFT s", "p50_ttft_s", "{:.3f}"),
    ("p99 TTFT s", "p99_ttft_s", "{:.3f}"),
    ("p50 total s", "p50_duration_s", "{:.3f}"),
    ("errors", "error_rate", "{:.1%}"),
    ("$/success", "cost_per_successful_request_usd", "{:.6f}"),
]


def print_usage_report(
    settings: Settings,
    models: ModelsFile,
    by: str,
    since: str | None,
    until: str | None,
    output_format: str,
) -> int:
    try:
        group_by = parse_group_by(by)
        start_s = parse_time(since)
        end_s = parse_time(until)
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    report = asyncio.run(_load_report(settings, models, group_by, start_s, end_s))
    if output_format == "json":
        sys.stdout.buffer.write(orjson.dumps(report.to_dict()) + b"\n")
    elif output_format == "csv":
        _write_csv(report)
    else:
        _print_table(report)
    return 0


async def _load_report(
    settings: Settings,
    models: ModelsFile,
    group_by: list[str],
    start_s: float | None,
    end_s: float | None,
) -> UsageReport:
    ledger = Ledger.open(settings.ledger)
    try:
        rows = await ledger.fetch_requests(start_s, end_s)
        uptime = await ledger.fetch_uptime(start_s or 0.0, end_s or time.time())
    finally:
        await ledger.close()
    pricing = {m.name: ModelPricing.from_home(m, settings.home) for m in models.models}
    return build_report(rows, uptime, models, pricing, group_by, start_s, end_s)


def _cell(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _print_table(report: UsageReport) -> None:
    # One column per group and one row per figure: groups are few, figures many,
    # and this way the table fits a terminal.
    console = Console()
    table = Table(title="usage", caption="- unknown")
    table.add_column(" / ".join(report.group_by))
    for row in report.rows:
        table.add_column(
            " / ".join("-" if v is None else v for v in row.group.values()),
            justify="right",
        )
    columns = [row.to_dict() for row in report.rows]
    for title, key, fmt in _COLUMNS:
        table.add_row(title, *(_cell(data[key], fmt) for data in columns))
    console.print(table)
    for bill in report.bills:
        utilization = "-" if bill.utilization is None else f"{bill.utilization:.1%}"
        console.print(
            f"{bill.model}: hardware ${bill.bill_usd:.4f} over the period, "
            f"${bill.idle_usd:.4f} of it idle (utilization {utilization})"
        )


def _write_csv(report: UsageReport) -> None:
    rows = [row.to_dict() for row in report.rows]
    names = [*report.group_by, *(k for k in rows[0] if k != "group")] if rows else []
    writer = csv.writer(sys.stdout)
    writer.writerow(names)
    for row, data in zip(report.rows, rows, strict=True):
        values = [
            *row.group.values(),
            *(data[k] for k in names[len(report.group_by) :]),
        ]
        writer.writerow(["" if v is None else v for v in values])
