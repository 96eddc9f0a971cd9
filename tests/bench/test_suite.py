"""The nightly suite schema: the shipped example, defaults, and readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.regression import DEFAULT_WATCH
from bench.runner import Point
from bench.suite import SuiteError, load_suite, parse_suite
from bench.workloads import MtBenchWorkload, SharedPrefixWorkload, SyntheticWorkload

EXAMPLES = Path(__file__).resolve().parents[2] / "bench" / "examples"


def test_the_example_suite_loads_and_builds_its_workloads() -> None:
    suite = load_suite(EXAMPLES / "nightly-suite.yaml")

    assert suite.name == "smollm2-nightly"
    assert suite.defaults.model == "smollm2-135m"
    assert suite.defaults.url == "http://127.0.0.1:8000/v1"
    workloads = [benchmark.workload.build() for benchmark in suite.benchmarks]
    assert [type(w) for w in workloads] == [
        SyntheticWorkload,
        SharedPrefixWorkload,
        MtBenchWorkload,
    ]
    assert suite.benchmarks[0].points() == [
        Point("concurrency", 1),
        Point("concurrency", 4),
        Point("concurrency", 16),
    ]
    assert suite.benchmarks[2].points()[0] == Point("rate", 2, 32)
    assert suite.regression.policy().tolerance_pct == 10


def test_the_example_ci_job_runs_on_a_gpu_runner_and_fails_on_regression() -> None:
    job = yaml.safe_load((EXAMPLES / "nightly-gpu-ci.yml").read_text())["jobs"]
    steps = job["nightly"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)

    assert job["nightly"]["runs-on"] == ["self-hosted", "gpu"]
    assert "make install" in commands
    assert "/ready" in commands
    assert "bench nightly bench/examples/nightly-suite.yaml" in commands
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload")]
    assert uploads
    assert uploads[0]["if"] == "always()"


def test_defaults_follow_bench_run_and_the_name_the_file(tmp_path: Path) -> None:
    raw = {"benchmarks": [{"name": "decode", "concurrency": [2]}]}

    suite = parse_suite(raw, tmp_path / "my-suite.yaml")

    assert suite.name == "my-suite"
    benchmark = suite.benchmarks[0]
    assert benchmark.workload.build() == SyntheticWorkload(256, 128, 0.0, 0)
    assert benchmark.num_requests is None
    assert suite.regression.policy().watch == DEFAULT_WATCH
    assert suite.defaults.telemetry == "auto"


def test_yaml_off_means_no_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "defaults: {telemetry: off}\nbenchmarks: [{name: a, concurrency: [1]}]\n"
    )

    assert load_suite(path).defaults.telemetry == "off"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"benchmarks": [{"name": "a", "concurrency": [1], "workload": {"x": 1}}]},
            "s.yaml: benchmark 'a': workload.x: unknown key",
        ),
        (
            {
                "benchmarks": [
                    {"name": "a", "concurrency": [1], "workload": {"kind": "b"}}
                ]
            },
            "benchmark 'a': workload.kind: choose one of synthetic, shared-prefix",
        ),
        (
            {"benchmarks": [{"name": "a"}]},
            "benchmark 'a': give at least one point",
        ),
        (
            {"benchmarks": [{"name": "a", "concurrency": [0]}]},
            "a concurrency of 0 is not valid",
        ),
        (
            {
                "benchmarks": [
                    {
                        "name": "a",
                        "concurrency": [1],
                        "num_requests": 5,
                        "duration_s": 9,
                    }
                ]
            },
            "give num_requests or duration_s, not both",
        ),
        (
            {"benchmarks": [{"name": "a", "concurrency": [1]}] * 2},
            "benchmark names must be unique; a repeats",
        ),
        (
            {"benchmarks": [{"name": "Bad Name", "concurrency": [1]}]},
            "benchmark 'Bad Name': name: use 1-64 lower-case letters",
        ),
        (
            {
                "regression": {"watch": ["ttft"]},
                "benchmarks": [{"name": "a", "concurrency": [1]}],
            },
            "s.yaml: regression: cannot watch ttft",
        ),
        (
            {
                "regression": {"history_runs": 2, "min_history": 3},
                "benchmarks": [{"name": "a", "concurrency": [1]}],
            },
            "min_history must be between 1 and history_runs (2), got 3",
        ),
        ({"defaults": {"usd_per_hour": -1}, "benchmarks": []}, "(got -1)"),
        ([1, 2], "a suite is a mapping with `benchmarks:`"),
    ],
)
def test_errors_name_the_file_benchmark_and_field(raw: Any, message: str) -> None:
    with pytest.raises(SuiteError) as error:
        parse_suite(raw, Path("s.yaml"))

    assert message in str(error.value)


def test_a_missing_file_points_at_the_example(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="cannot read the suite"):
        load_suite(tmp_path / "nope.yaml")
