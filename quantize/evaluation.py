"""Quality measures from vLLM prompt log-probabilities: perplexity, top-1
agreement and KL divergence against the base model, on fixed token windows.

vLLM returns, for every prompt position after the first, the log-probability of
the token that is really there and of the `k` most likely tokens. Perplexity needs
only the first. Agreement compares the two models' most likely tokens. The KL
divergence KL(base || quantized) is computed over the base model's top-k tokens
plus one bucket for the rest of the vocabulary; merging tokens into a bucket can
only lower KL, so this is a slight underestimate, and a quantized log-probability
missing from the quantized top-k is taken as that top-k's lowest (an upper bound
on it). With k = 20 the bucket holds a few percent of the probability mass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
WIKITEXT_TEST_PATH = DATA_DIR / "wikitext2-test.txt"
MT_BENCH_PATH = DATA_DIR / "mt-bench-questions.jsonl"

# One position's prompt log-probabilities: token id -> (logprob, rank).
Position = dict[int, tuple[float, int]]
_MIN_PROB = 1e-12


@dataclass(frozen=True)
class EvalText:
    """A held-out text and how it is cut into windows."""

    name: str
    description: str
    path: Path

    def read(self) -> str:
        if self.path.suffix != ".jsonl":
            return self.path.read_text()
        turns = [
            turn
            for line in self.path.read_text().splitlines()
            if line.strip()
            for turn in json.loads(line)["turns"]
        ]
        return "\n\n".join(turns)


EVAL_TEXTS = (
    EvalText(
        "wikitext2-test",
        "WikiText-2 test split (encyclopedia prose), never used for calibration",
        WIKITEXT_TEST_PATH,
    ),
    EvalText(
        "mt-bench",
        "the 80 MT-Bench questions, both turns (chat requests: a different kind "
        "of text from the calibration's)",
        MT_BENCH_PATH,
    ),
)


def windows(token_ids: Sequence[int], num_windows: int, length: int) -> list[list[int]]:
    """The first `num_windows` non-overlapping windows of `length` tokens."""
    count = min(num_windows, len(token_ids) // length)
    return [list(token_ids[i * length : (i + 1) * length]) for i in range(count)]


@dataclass(frozen=True)
class WindowScores:
    """One model's prompt log-probabilities over one window (positions 1..n-1)."""

    target_ids: list[int]
    positions: list[Position]

    def nll_sum(self) -> float:
        return -sum(
            position[token][0]
            for token, position in zip(self.target_ids, self.positions, strict=True)
        )

    def top1(self) -> list[int]:
        return [
            min(position, key=lambda t: position[t][1]) for position in self.positions
        ]


def perplexity(scores: Sequence[WindowScores]) -> float:
    """exp of the mean negative log-likelihood over every predicted token."""
    num_tokens = sum(len(s.target_ids) for s in scores)
    return math.exp(sum(s.nll_sum() for s in scores) / num_tokens)


def top1_agreement(
    base: Sequence[WindowScores], other: Sequence[WindowScores]
) -> float:
    """Fraction of positions where both models' most likely token is the same."""
    pairs = [
        (a, b)
        for base_w, other_w in zip(base, other, strict=True)
        for a, b in zip(base_w.top1(), other_w.top1(), strict=True)
    ]
    return sum(a == b for a, b in pairs) / len(pairs)


def mean_kl(
    base: Sequence[WindowScores], other: Sequence[WindowScores], top_k: int
) -> float:
    """Mean KL(base || other) per position, in nats, over base's top-k + the rest."""
    values = [
        position_kl(p, q, top_k)
        for base_w, other_w in zip(base, other, strict=True)
        for p, q in zip(base_w.positions, other_w.positions, strict=True)
    ]
    return sum(values) / len(values)


def position_kl(base: Position, other: Position, top_k: int) -> float:
    support = [token for token, (_, rank) in base.items() if rank <= top_k]
    floor = min(logprob for logprob, rank in other.values() if rank <= top_k)
    kl, p_mass, q_mass = 0.0, 0.0, 0.0
    for token in support:
        log_p = base[token][0]
        log_q = other[token][0] if token in other else floor
        p, q = math.exp(log_p), math.exp(log_q)
        kl += p * (log_p - log_q)
        p_mass += p
        q_mass += q
    p_rest = max(1.0 - p_mass, _MIN_PROB)
    q_rest = max(1.0 - q_mass, _MIN_PROB)
    return max(kl + p_rest * math.log(p_rest / q_rest), 0.0)


def compare(
    base: Sequence[WindowScores], other: Sequence[WindowScores], top_k: int
) -> dict[str, Any]:
    """Perplexity before and after, its change, top-1 agreement and mean KL."""
    ppl_before, ppl_after = perplexity(base), perplexity(other)
    return {
        "ppl_before": round(ppl_before, 4),
        "ppl_after": round(ppl_after, 4),
        "ppl_increase_pct": round((ppl_after / ppl_before - 1) * 100, 3),
        "top1_agreement": round(top1_agreement(base, other), 4),
        "mean_kl": round(mean_kl(base, other, top_k), 5),
    }
