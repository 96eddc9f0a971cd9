"""What a benchmark sends: synthetic, shared-prefix and MT-Bench requests.

A workload makes request `index` the same way every time (its random numbers are
seeded by the index), so a run by request count or by duration, and a rerun, send
the same requests in the same order.

Without the model's tokenizer, lengths are counted in words drawn from short,
common English words, each one token for GPT-2-style BPE tokenizers (SmolLM2,
Llama, Qwen) — close to, not exactly, the requested token count. The metrics count
the tokens the server reports in `usage`, never these estimates.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol

import orjson

WorkloadKind = Literal["synthetic", "shared-prefix", "mt-bench"]
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("synthetic", "shared-prefix", "mt-bench")

_WORDS_TEXT = (
    "the of and to in is for on that by this with you it not or be are from at as "
    "your all have new more an was we will home can us about if page my has search "
    "free but our one other do no time they site he up may what which their news "
    "out use any there see only so his when contact here business who web also now "
    "help get view online first am been would how were me some these click its "
    "like service than find price date back top people had list name just over "
    "state year day into email two health world next used go work last most music "
    "buy data make them should product system post her city add policy number such "
    "please available copyright support message after best software then jan good "
    "video well where info rights public books high school through each links she "
    "review years order very book read need many user said does set under general "
    "research university mail full map reviews program life know games way days"
)
_WORDS = tuple(_WORDS_TEXT.split())


@dataclass(frozen=True)
class BenchRequest:
    """One request's content; the runner adds the model and streaming options."""

    messages: list[dict[str, str]]
    max_tokens: int
    extra_body: dict[str, Any] = field(default_factory=dict)

    def prompt_text(self) -> str:
        """The messages as one completion prompt, for `/v1/completions`."""
        return "\n\n".join(message["content"] for message in self.messages)

    def encode(
        self, model: str, is_chat: bool, is_stream: bool, ignore_eos: bool
    ) -> bytes:
        body: dict[str, Any] = {"model": model, "max_tokens": self.max_tokens}
        if is_chat:
            body["messages"] = self.messages
        else:
            body["prompt"] = self.prompt_text()
        if is_stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if ignore_eos:
            # vLLM's extension: decode all max_tokens, so output lengths are exact.
            body["ignore_eos"] = True
        return orjson.dumps({**body, **self.extra_body})


class Workload(Protocol):
    """Makes the benchmark's requests, the same one for the same index."""

    def request(self, index: int) -> BenchRequest: ...

    def describe(self) -> dict[str, Any]: ...


def _lengths(mean: int, range_ratio: float, rng: random.Random) -> int:
    low = max(1, round(mean * (1 - range_ratio)))
    high = max(low, round(mean * (1 + range_ratio)))
    return rng.randint(low, high)


def random_words(num_words: int, rng: random.Random) -> str:
    return " ".join(rng.choices(_WORDS, k=num_words))


@dataclass(frozen=True)
class SyntheticWorkload:
    """Random-word prompts of about `input_len` tokens asking for `output_len`.

    Lengths are drawn uniformly from [len x (1 - range_ratio), len x (1 +
    range_ratio)], as vLLM's random dataset does.
    """

    input_len: int = 256
    output_len: int = 128
    range_ratio: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(input_len=self.input_len, output_len=self.output_len)
        if not 0 <= self.range_ratio < 1:
            raise ValueError(
                f"range_ratio must be in [0, 1), got {self.range_ratio}; try 0.1"
            )

    def request(self, index: int) -> BenchRequest:
        rng = random.Random(f"{self.seed}:{index}")
        num_words = _lengths(self.input_len, self.range_ratio, rng)
        max_tokens = _lengths(self.output_len, self.range_ratio, rng)
        messages = [{"role": "user", "content": random_words(num_words, rng)}]
        return BenchRequest(messages, max_tokens)

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic", **self.__dict__}


@dataclass(frozen=True)
class SharedPrefixWorkload:
    """Requests that share one of `num_prefixes` long system prompts.

    Request i uses prefix i mod `num_prefixes` (`prefix_len` words) and a question
    of its own (`suffix_len` words): after the first request of each prefix, a
    prefix cache can serve the prefix, which `cached tokens` then shows.
    """

    prefix_len: int = 512
    suffix_len: int = 32
    output_len: int = 64
    num_prefixes: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(
            prefix_len=self.prefix_len,
            suffix_len=self.suffix_len,
            output_len=self.output_len,
            num_prefixes=self.num_prefixes,
        )

    def request(self, index: int) -> BenchRequest:
        prefix_rng = random.Random(f"{self.seed}:prefix:{index % self.num_prefixes}")
        rng = random.Random(f"{self.seed}:{index}")
        messages = [
            {"role": "system", "content": random_words(self.prefix_len, prefix_rng)},
            {"role": "user", "content": random_words(self.suffix_len, rng)},
        ]
        return BenchRequest(messages, self.output_len)

    def describe(self) -> dict[str, Any]:
        return {"kind": "shared-prefix", **self.__dict__}


@dataclass(frozen=True)
class MtBenchWorkload:
    """The first turns of the 80 MT-Bench questions, in a seeded shuffled order."""

    output_len: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(output_len=self.output_len)

    def request(self, index: int) -> BenchRequest:
        order = _shuffled_questions(self.seed)
        prompt = order[index % len(order)]
        return BenchRequest([{"role": "user", "content": prompt}], self.output_len)

    def describe(self) -> dict[str, Any]:
        return {"kind": "mt-bench", **self.__dict__}


@cache
def mt_bench_questions() -> tuple[str, ...]:
    """First turns of MT-Bench (Zheng et al. 2023, Apache-2.0; see data/README)."""
    data = resources.files("bench") / "data" / "mt_bench_questions.jsonl"
    lines = data.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line)["turns"][0] for line in lines if line.strip())


@cache
def _shuffled_questions(seed: int) -> tuple[str, ...]:
    questions = list(mt_bench_questions())
    random.Random(seed).shuffle(questions)
    return tuple(questions)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
