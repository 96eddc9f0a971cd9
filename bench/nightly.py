"""`bench nightly SUITE.yaml`: run a suite, judge it against its history, report.

Each benchmark of the suite runs as `bench run` would (`bench.sweep`) and is
stored in the history as an ordinary run whose config also names the suite and
the benchmark. Its watched figures are then judged against the benchmark's recent
accepted runs (`bench.regression` explains the noise-aware rule), a Markdown report
with PNG plots is written, and the exit status is 1 when anything regressed or
requests failed (0 otherwise, 2 for a bad suite or option), so cron, a systemd
timer or a CI job can alert on it. `--accept` stores a run that regressed as the
new baseline after an intended change, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bench.history import History
    from bench.nightly_report import BenchmarkOutcome
    from bench.regression import Finding, Policy
    from bench.suite import Benchmark, Defaults, Suite

logger = logging.getLogger(__name__)

# The history filters by kind and model in SQL; suite, benchmark and config are
# matched here, among this many of the model's latest runs.
_MAX_SCANNED_RUNS = 2000
_VERDICT_STYLES = {
    "regression": "bold red",
    "errors": "bold red",
    "accepted": "yellow",
    "improvement": "green",
    "no-baseline": "dim",
    "not-measured": "dim",
}


def add_parser(commands: Any) -> None:
    """Add `nightly` to the `bench` command's subparsers."""
    from bench.cli import add_output_args

    nightly = commands.add_parser(
        "nightly",
        help="run a suite, compare with earlier runs, report; exit 1 on a regression",
    )
    nightly.add_argument(
        "suite", type=Path, help="the suite file (bench/examples/nightly-suite.yaml)"
    )
    nightly.add_argument(
        "--report-dir",
        type=Path,
        help="where report.md and the plots go (default ./bench-nightly/UTC-TIME)",
    )
    nightly.add_argument("--url", help="instead of the suite's defaults.url")
    nightly.add_argument("--hardware", help="instead of the suite's defaults.hardware")
    nightly.add_argument(
        "--accept",
        action="store_true",
        help="after an intended change: store regressed runs as the new baseline "
        "and exit 0",
    )
    add_output_args(nightly, with_result=False)


def nightly_command(args: argparse.Namespace, console: Console) -> int:
    """`bench nightly`: run, store, judge and report every benchmark of a suite."""
    import orjson

    from bench.cli import history_path
    from bench.history import History
    from bench.nightly_report import summary, write_report
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    overrides = {"url": args.url, "hardware": args.hardware}
    defaults = suite.defaults.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    started_at = datetime.now(UTC)
    report_dir = args.report_dir or Path("bench-nightly") / started_at.strftime(
        "%Y%m%dT%H%M%SZ"
    )
    history = History(history_path(args))
    policy = suite.regression.policy()

    environment: dict[str, Any] | None = None
    outcomes = []
    for benchmark in suite.benchmarks:
        console.rule(f"bench nightly: {suite.name} / {benchmark.name}")
        outcome, environment = _run_benchmark(
            suite, benchmark, defaults, environment, history, policy, args, console
        )
        _print_benchmark(outcome, console)
        outcomes.append(outcome)

    report = write_report(report_dir, suite.name, args.suite, outcomes, policy)
    _print_summary(suite.name, outcomes, report, console)
    if args.json:
        line = {**summary(suite.name, outcomes), "report": str(report)}
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 1 if any(o.verdict == "regression" for o in outcomes) else 0


def _run_benchmark(
    suite: Suite,
    benchmark: Benchmark,
    defaults: Defaults,
    environment: dict[str, Any] | None,
    history: History,
    policy: Policy,
    args: argparse.Namespace,
    console: Console,
) -> tuple[BenchmarkOutcome, dict[str, Any]]:
    from bench.cli import environment as describe_environment
    from bench.cli import target_from
    from bench.nightly_report import BenchmarkOutcome
    from bench.regression import comparable_runs, compare_run, is_baseline
    from bench.sweep import RunConfig, run_result, run_sweep

    # The options `bench run` would have been given, so its helpers apply as is.
    target_args = argparse.Namespace(
        url=defaults.url,
        api_key_env=defaults.api_key_env,
        endpoint=benchmark.endpoint or defaults.endpoint,
        no_stream=not defaults.stream,
        hardware=defaults.hardware,
        usd_per_hour=defaults.usd_per_hour,
    )
    target = target_from(
        target_args, benchmark.model or defaults.model, benchmark.workload.ignore_eos
    )
    # `bench run` measures 100 requests a point unless told otherwise.
    num_requests = benchmark.num_requests
    if num_requests is None and benchmark.duration_s is None:
        num_requests = 100
    config = RunConfig(
        target=target,
        workload=benchmark.workload.build(),
        points=benchmark.points(),
        num_requests=num_requests,
        duration_s=benchmark.duration_s,
        num_warmup=benchmark.num_warmup,
        slo=benchmark.run_slo(),
        usd_per_hour=defaults.usd_per_hour,
        telemetry=defaults.telemetry,
        seed=benchmark.workload.seed,
    )
    if environment is None:
        environment = describe_environment(target_args, target)

    points = asyncio.run(run_sweep(config, console))
    result = run_result(config, points, environment)
    result["config"].update(suite=suite.name, benchmark=benchmark.name)

    earlier = comparable_runs(
        history.runs("run", target.model, _MAX_SCANNED_RUNS), result
    )
    baseline = [run for run in earlier if is_baseline(run)][: policy.history_runs]
    logger.debug(
        "%s: %d comparable earlier runs, %d of them baselines",
        benchmark.name,
        len(earlier),
        len(baseline),
    )
    findings = compare_run(result, baseline, policy)
    has_failed = any(finding.is_failure for finding in findings)
    result["nightly"] = {
        "is_baseline": args.accept or not has_failed,
        "is_accepted": args.accept and has_failed,
        "num_failing": sum(finding.is_failure for finding in findings),
    }
    run_id = history.record(result)
    outcome = BenchmarkOutcome(
        benchmark.name, result, run_id, findings, earlier, args.accept
    )
    return outcome, environment


def _print_benchmark(outcome: BenchmarkOutcome, console: Console) -> None:
    from bench.sweep import print_errors, results_table

    points = outcome.result["points"]
    console.print(results_table(points, f"{outcome.name} (run {outcome.run_id})"))
    print_errors(points, console)
    console.print(_findings_table(outcome.findings))


def _findings_table(findings: list[Finding]) -> Table:
    from bench.nightly_report import number_text, range_text

    table = Table(title="against the recent accepted runs")
    for header in ("point", "figure", "now", "range", "limit", "vs worst", "verdict"):
        table.add_column(header, justify="left" if header != "now" else "right")
    for f in findings:
        worse = f.worse_by_pct
        table.add_row(
            f.point,
            f.figure,
            number_text(f.value),
            range_text(f.baseline),
            number_text(f.limit),
            "-" if worse is None else f"{worse:+.1f}%",
            _styled(f.verdict),
        )
    return table


def _print_summary(
    suite_name: str,
    outcomes: list[BenchmarkOutcome],
    report: Path,
    console: Console,
) -> None:
    for outcome in outcomes:
        for finding in outcome.failures:
            console.print(
                f"{outcome.name}: {_styled(finding.verdict)}: {finding.describe()}",
                highlight=False,
            )
    verdicts = ", ".join(f"{o.name} {_styled(o.verdict)}" for o in outcomes)
    console.print(f"bench nightly {suite_name}: {verdicts}", highlight=False)
    console.print(f"report: {report}", highlight=False)


def _styled(verdict: str) -> str:
    style = _VERDICT_STYLES.get(verdict)
    return f"[{style}]{verdict}[/]" if style else verdict
