"""The calibration fit on synthetic data, and `bench calibrate` against the mock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.calibrate import (
    CalibrationFitError,
    FitPoint,
    fit_engine_seconds,
    parse_design,
)
from bench.cli import main
from bench.history import History
from bench.mock_server import MockServer
from server.calibration import calibration_path, load_calibration
from tests.bench.mock_thread import mock_in_thread

PROMPT_S = 2e-4
COMPLETION_S = 5e-3
DESIGN = [(64, 16), (64, 128), (512, 16), (512, 128), (256, 64)]


def _points(noise: float = 0.0, seed: int = 0) -> list[FitPoint]:
    rng = random.Random(seed)
    return [
        FitPoint(p, c, (PROMPT_S * p + COMPLETION_S * c) * (1 + rng.gauss(0, noise)))
        for p, c in DESIGN
    ]


def test_fit_recovers_known_coefficients_exactly() -> None:
    fit = fit_engine_seconds(_points())

    assert fit.prompt_s_per_token == pytest.approx(PROMPT_S, rel=1e-9)
    assert fit.completion_s_per_token == pytest.approx(COMPLETION_S, rel=1e-9)
    assert fit.residual_rel_rms == pytest.approx(0, abs=1e-9)
    assert fit.num_points == 5


def test_fit_with_noise_is_close_and_reports_the_noise() -> None:
    fit = fit_engine_seconds(_points(noise=0.05, seed=3))

    assert fit.prompt_s_per_token == pytest.approx(PROMPT_S, rel=0.3)
    assert fit.completion_s_per_token == pytest.approx(COMPLETION_S, rel=0.1)
    assert 0.005 < fit.residual_rel_rms < 0.1


def test_fit_never_gives_a_negative_cost() -> None:
    # Prompt tokens cost nothing and the data says slightly less than nothing.
    points = [FitPoint(p, c, COMPLETION_S * c * (1 - p / 1e5)) for p, c in DESIGN]

    fit = fit_engine_seconds(points)

    assert fit.prompt_s_per_token == 0
    assert fit.completion_s_per_token == pytest.approx(COMPLETION_S, rel=0.01)


def test_a_design_that_cannot_separate_the_costs_is_refused() -> None:
    points = [FitPoint(n, n / 4, 0.001 * n) for n in (16, 64, 256)]

    with pytest.raises(CalibrationFitError, match="vary them independently"):
        fit_engine_seconds(points)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("64:16,512", "PROMPT:OUTPUT"),
        ("64:16,0:5,1:1", ">= 1"),
        ("1:1,2:3", "at least"),
    ],
)
def test_bad_design_says_how_to_write_one(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_design(text)


def test_calibrate_writes_the_file_the_server_reads(tmp_path: Path) -> None:
    with mock_in_thread(MockServer(token_delay_s=0.002)) as url:
        code = main(
            [
                "calibrate", "smol", "--url", url, "--served-model", "m",
                "--hardware", "test-box", "--usd-per-hour", "1.0",
                "--reference-concurrency", "2", "--requests-per-point", "4",
                "--design", "8:2,8:8,64:2,64:8", "--home", str(tmp_path),
            ]
        )  # fmt: skip

    assert code == 0
    calibration = load_calibration(calibration_path(tmp_path, "smol"))
    assert calibration.hardware == "test-box"
    assert calibration.reference_concurrency == 2
    assert calibration.num_fit_points == 4
    # The mock spends its time on output tokens, 2 ms each shared by 2 clients.
    assert 0.5e-3 < calibration.completion_s_per_token < 5e-3
    (run,) = History(tmp_path / "bench.sqlite3").runs(kind="calibrate")
    assert run.model == "smol"
    assert run.result["fit"]["completion_usd_per_mtok"] > 0
