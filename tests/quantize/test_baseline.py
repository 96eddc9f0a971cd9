"""`--vs-rtn`: round-to-nearest at the same scheme, and the ratio of the increases."""

import math
from pathlib import Path

import pytest

from quantize import baseline, report
from quantize.errors import QuantizeError
from quantize.evaluation import EVAL_TEXTS, WindowScores
from quantize.gate import GateSettings, Measurement
from quantize.methods import METHODS
from quantize.plan import Plan


def _scores(logprob: float) -> list[WindowScores]:
    # One window of two predicted tokens, each with the given log-probability.
    return [WindowScores([1, 2], [{1: (logprob, 1)}, {2: (logprob, 1)}])]


def _measurement(logprob: float) -> Measurement:
    return Measurement(
        {text.name: _scores(logprob) for text in EVAL_TEXTS}, ["Paris."], 1.0
    )


def test_the_baseline_plan_changes_only_the_method_and_drops_the_data() -> None:
    plan = Plan(
        method="gptq",
        bits=4,
        source_dir="/m/base",
        output_dir="/stage/checkpoint",
        result_path="/stage/result.json",
        group_size=32,
        symmetric=False,
        calib_path="/d/calib.txt",
        num_calib_samples=64,
        ignore={"lm_head": "why"},
        dampening_frac=0.1,
        weight_observer="imatrix_mse",
    )
    rtn = baseline.rtn_plan(plan)
    # Plain round-to-nearest: no data, so no activation-weighted scales either.
    assert rtn.weight_observer == "minmax"
    assert (rtn.method, rtn.bits, rtn.group_size, rtn.symmetric) == (
        "rtn",
        4,
        32,
        False,
    )
    assert rtn.ignore == plan.ignore
    assert (rtn.calib_path, rtn.num_calib_samples) == (None, 0)
    assert Path(rtn.output_dir) == Path("/stage/rtn-checkpoint")
    assert Path(rtn.result_path).parent == Path("/stage")
    assert rtn.result_path != plan.result_path


@pytest.mark.parametrize("name", ["w8a16", "rtn", "fp8", "bnb"])
def test_methods_without_a_like_for_like_baseline_are_refused(name: str) -> None:
    with pytest.raises(QuantizeError, match=f"not {name}; drop --vs-rtn"):
        baseline.check_comparable(METHODS[name])


def test_the_ratio_is_the_calibrated_increase_over_round_to_nearests() -> None:
    base_nll = 3.0
    measured = {"settings": GateSettings(), "base": _measurement(-base_nll)}
    # Round-to-nearest raises perplexity by 20%; the calibrated method by 5%.
    rtn_after = _measurement(-(base_nll + math.log(1.2)))
    texts = [{"name": t.name, "ppl_increase_pct": 5.0} for t in EVAL_TEXTS]
    summary = baseline.summarize(
        {"compression_wall_s": 3.0, "after": rtn_after}, texts, measured
    )
    assert [row["ppl_increase_pct"] for row in summary["texts"]] == pytest.approx(
        [20.0] * len(EVAL_TEXTS)
    )
    assert [row["increase_ratio"] for row in summary["texts"]] == pytest.approx(
        [0.25] * len(EVAL_TEXTS)
    )
    line = baseline.describe(summary)
    assert "+5.00% vs +20.00% (0.25x round-to-nearest's increase)" in line


def test_no_ratio_when_round_to_nearest_lost_nothing() -> None:
    measured = {"settings": GateSettings(), "base": _measurement(-3.0)}
    texts = [{"name": t.name, "ppl_increase_pct": 0.5} for t in EVAL_TEXTS]
    summary = baseline.summarize(
        {"compression_wall_s": 1.0, "after": _measurement(-3.0)}, texts, measured
    )
    assert all(row["increase_ratio"] is None for row in summary["texts"])


def test_the_markdown_report_shows_the_baseline_beside_the_method() -> None:
    rtn = {
        "texts": [
            {
                "name": "wikitext2-test",
                "calibrated_increase_pct": 5.0,
                "ppl_increase_pct": 20.0,
                "mean_kl": 0.2,
                "increase_ratio": 0.25,
            }
        ]
    }
    section = "\n".join(report._rtn_baseline(rtn))
    assert "| wikitext2-test | +5.00% | +20.00% | 0.25 | 0.2000 |" in section
    assert report._rtn_baseline(None) == []
