"""The report of a `bench nightly` run: `report.md`, its PNG plots, `summary.json`.

The Markdown names the environment (git revision, engine, hardware), the rule the
verdicts follow, and per benchmark the throughput-latency curve, a table of every
watched figure (now, the recent range, the limit, the verdict) and its history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.nightly_plots import curve_png, history_png
from bench.regression import Finding, Policy

logger = logging.getLogger(__name__)

_VERDICT_TEXT = {
    "regression": "**REGRESSION**",
    "errors": "**ERRORS**",
    "improvement": "improvement",
    "ok": "ok",
    "no-baseline": "no baseline yet",
    "not-measured": "not measured",
    "accepted": "regressed, accepted as the new baseline",
}


@dataclass
class BenchmarkOutcome:
    """One benchmark of the suite: its new run, verdicts and comparable history."""

    name: str
    result: dict[str, Any]
    run_id: int
    findings: list[Finding]
    # Earlier comparable runs, newest first, accepted or not (for the plots).
    history: list[dict[str, Any]]
    is_accepted: bool = False

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.is_failure]

    @property
    def improvements(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "improvement"]

    @property
    def verdict(self) -> str:
        """regression, accepted, improvement, no-baseline or ok."""
        if self.failures:
            return "accepted" if self.is_accepted else "regression"
        if self.improvements:
            return "improvement"
        judged = [f for f in self.findings if f.verdict != "not-measured"]
        if judged and all(f.verdict == "no-baseline" for f in judged):
            return "no-baseline"
        return "ok"


def summary(suite_name: str, outcomes: Sequence[BenchmarkOutcome]) -> dict[str, Any]:
    """The run's verdicts, JSON-ready, for CI tools."""
    return {
        "suite": suite_name,
        "is_regression": any(o.verdict == "regression" for o in outcomes),
        "benchmarks": [
            {
                "name": o.name,
                "run_id": o.run_id,
                "verdict": o.verdict,
                "findings": [
                    {**asdict(f), "limit": f.limit, "worse_by_pct": f.worse_by_pct}
                    for f in o.findings
                ],
            }
            for o in outcomes
        ],
    }


def write_report(
    report_dir: Path,
    suite_name: str,
    suite_path: Path,
    outcomes: Sequence[BenchmarkOutcome],
    policy: Policy,
) -> Path:
    """Write report.md, the plots and summary.json into `report_dir`; report.md."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for outcome in outcomes:
        (report_dir / f"{outcome.name}-curve.png").write_bytes(curve_png(outcome))
        (report_dir / f"{outcome.name}-history.png").write_bytes(
            history_png(outcome, policy.watch)
        )
    (report_dir / "summary.json").write_bytes(
        orjson.dumps(summary(suite_name, outcomes), option=orjson.OPT_INDENT_2)
    )
    path = report_dir / "report.md"
    path.write_text(markdown(suite_name, suite_path, outcomes, policy))
    logger.debug("wrote the nightly report to %s", path)
    return path


def markdown(
    suite_name: str,
    suite_path: Path,
    outcomes: Sequence[BenchmarkOutcome],
    policy: Policy,
) -> str:
    """The whole report as Markdown; the PNGs sit beside it."""
    is_regression = any(o.verdict == "regression" for o in outcomes)
    environment = outcomes[0].result["environment"] if outcomes else {}
    created_at = outcomes[0].result["created_at"] if outcomes else "-"
    lines = [
        f"# bench nightly: {suite_name} — "
        + ("REGRESSION" if is_regression else "pass"),
        "",
        f"{created_at}, suite `{suite_path}`. A figure regresses when it is worse "
        f"than the worst of its last {policy.history_runs} accepted runs by more "
        f"than {policy.tolerance_pct:g}%; with fewer than {policy.min_history} "
        "such runs it has no baseline yet. Failed requests always fail the run. "
        "`vs worst`: how much worse than the worst of that range (negative: "
        "better).",
        "",
        *_environment_lines(environment, outcomes),
        "",
        "## Summary",
        "",
        "| benchmark | run | verdict | failing | improved |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.name} | {o.run_id} | {_verdict_text(o.verdict)} | "
            f"{len(o.failures)} | {len(o.improvements)} |"
        )
    if failures := [(o, f) for o in outcomes for f in o.failures]:
        lines += ["", "## Regressions", ""]
        lines += [f"- {o.name}: {f.describe()}" for o, f in failures]
    for outcome in outcomes:
        lines += ["", *_benchmark_lines(outcome, policy)]
    return "\n".join(lines) + "\n"


def _environment_lines(
    environment: dict[str, Any], outcomes: Sequence[BenchmarkOutcome]
) -> list[str]:
    host = environment.get("host") or {}
    url = outcomes[0].result["config"].get("url") if outcomes else None
    rows = [
        ("git revision", environment.get("git_revision")),
        ("tokenmill", environment.get("tokenmill_version")),
        ("engine", environment.get("engine_version")),
        ("hardware", environment.get("hardware")),
        ("$/hour", environment.get("usd_per_hour")),
        ("client host", f"{host.get('hostname')} ({host.get('platform')})"),
        ("endpoint", url),
    ]
    lines = ["## Environment", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {_code(value)} |" for name, value in rows]
    return lines


def _benchmark_lines(outcome: BenchmarkOutcome, policy: Policy) -> list[str]:
    config = outcome.result["config"]
    workload = config["workload"]
    amount = (
        f"{config['num_requests']} requests"
        if config["num_requests"] is not None
        else f"{config['duration_s']:g} s"
    )
    workload_text = ", ".join(f"{k} {v}" for k, v in workload.items() if k != "kind")
    lines = [
        f"## {outcome.name}",
        "",
        f"{_verdict_text(outcome.verdict)}. Model `{config['model']}`, "
        f"{config['endpoint']}, {workload['kind']} ({workload_text}), "
        f"{amount} a point: {', '.join(config['points'])}. Stored as run "
        f"{outcome.run_id}; {len(outcome.history)} earlier comparable runs.",
        "",
        f"![{outcome.name}: throughput against latency]({outcome.name}-curve.png)",
        "",
        f"| point | figure | better | now | last {policy.history_runs} "
        "(min..max) | limit | vs worst | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for f in outcome.findings:
        baseline = range_text(f.baseline)
        if f.baseline:
            baseline += f" ({len(f.baseline)})"
        worse = f.worse_by_pct
        lines.append(
            f"| {f.point} | `{f.figure}` | {f.direction} | {number_text(f.value)} | "
            f"{baseline} | {number_text(f.limit)} | "
            f"{'-' if worse is None else f'{worse:+.1f}%'} | "
            f"{_verdict_text(f.verdict)} |"
        )
    lines += [
        "",
        f"![{outcome.name}: history of the watched figures]"
        f"({outcome.name}-history.png)",
    ]
    return lines


def _verdict_text(verdict: str) -> str:
    return _VERDICT_TEXT.get(verdict, verdict)


def range_text(values: Sequence[float]) -> str:
    """`min..max` of `values`, or `-` when there are none."""
    if not values:
        return "-"
    return f"{number_text(min(values))}..{number_text(max(values))}"


def number_text(value: float | None) -> str:
    """A figure for people: thousands grouped, about four significant digits."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _code(value: Any) -> str:
    return "unknown" if value is None else f"`{value}`"
