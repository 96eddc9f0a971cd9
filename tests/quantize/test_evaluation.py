import math

import pytest

from quantize.evaluation import (
    EVAL_TEXTS,
    WindowScores,
    mean_kl,
    perplexity,
    position_kl,
    top1_agreement,
    windows,
)


def _position(probs: dict[int, float]) -> dict[int, tuple[float, int]]:
    ranked = sorted(probs, key=lambda t: -probs[t])
    return {t: (math.log(probs[t]), ranked.index(t) + 1) for t in probs}


def test_windows_are_fixed_and_non_overlapping() -> None:
    assert windows(list(range(10)), num_windows=5, length=4) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]


def test_perplexity_is_exp_of_mean_nll_over_all_tokens() -> None:
    a = WindowScores(
        [1, 2], [_position({1: 0.5, 9: 0.5}), _position({2: 0.25, 9: 0.75})]
    )
    b = WindowScores([3], [_position({3: 1.0})])
    expected = math.exp((math.log(2) + math.log(4) + 0) / 3)
    assert perplexity([a, b]) == pytest.approx(expected)


def test_identical_distributions_agree_fully_with_zero_kl() -> None:
    window = WindowScores([1], [_position({1: 0.6, 2: 0.3, 3: 0.1})])
    assert top1_agreement([window], [window]) == 1.0
    assert mean_kl([window], [window], top_k=2) == pytest.approx(0.0, abs=1e-12)


def test_kl_grows_when_the_quantized_model_moves_mass() -> None:
    base = _position({1: 0.7, 2: 0.2, 3: 0.1})
    near = _position({1: 0.65, 2: 0.25, 3: 0.1})
    far = _position({2: 0.7, 1: 0.2, 3: 0.1})
    assert 0 < position_kl(base, near, top_k=3) < position_kl(base, far, top_k=3)
    exact = 0.7 * math.log(0.7 / 0.2) + 0.2 * math.log(0.2 / 0.7)
    assert position_kl(base, far, top_k=3) == pytest.approx(exact)


def test_a_token_missing_from_the_quantized_top_k_uses_its_floor() -> None:
    base = _position({1: 0.9, 2: 0.1})
    other = _position({3: 0.8, 4: 0.15})
    assert position_kl(base, other, top_k=2) > 1.0


def test_shipped_evaluation_texts_are_long_enough() -> None:
    wikitext, mt_bench = EVAL_TEXTS
    assert len(wikitext.read()) > 90_000
    assert "Compose an engaging travel blog post" in mt_bench.read()
