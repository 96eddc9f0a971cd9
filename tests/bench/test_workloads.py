"""Workloads: the same request for the same index, and the lengths asked for."""

from __future__ import annotations

import orjson
import pytest

from bench.workloads import (
    MtBenchWorkload,
    SharedPrefixWorkload,
    SyntheticWorkload,
    mt_bench_questions,
)


def test_synthetic_requests_are_reproducible_and_of_the_given_lengths() -> None:
    workload = SyntheticWorkload(input_len=100, output_len=20, range_ratio=0.5)

    requests = [workload.request(i) for i in range(50)]

    assert workload.request(7) == requests[7]
    assert requests[0] != requests[1]
    for request in requests:
        assert 50 <= len(request.messages[0]["content"].split()) <= 150
        assert 10 <= request.max_tokens <= 30
    assert SyntheticWorkload(100, 20).request(3).max_tokens == 20


def test_shared_prefix_requests_share_their_system_prompt() -> None:
    workload = SharedPrefixWorkload(
        prefix_len=64, suffix_len=8, output_len=4, num_prefixes=2
    )

    first, second, third = (workload.request(i) for i in range(3))

    assert first.messages[0] == third.messages[0] != second.messages[0]
    assert first.messages[1] != third.messages[1]
    assert len(first.messages[0]["content"].split()) == 64
    assert first.prompt_text().startswith(first.messages[0]["content"] + "\n\n")


def test_mt_bench_ships_its_80_questions() -> None:
    workload = MtBenchWorkload(output_len=32)

    prompts = {workload.request(i).messages[0]["content"] for i in range(80)}

    assert len(mt_bench_questions()) == 80
    assert prompts == set(mt_bench_questions())
    assert workload.request(80) == workload.request(0)


def test_encode_asks_for_usage_and_ignore_eos() -> None:
    request = SyntheticWorkload(4, 3).request(0)

    chat = orjson.loads(request.encode("m", True, True, ignore_eos=True))
    completion = orjson.loads(request.encode("m", False, False, ignore_eos=False))

    assert chat["stream_options"] == {"include_usage": True}
    assert chat["ignore_eos"] is True
    assert chat["messages"] == request.messages
    assert completion == {
        "model": "m",
        "max_tokens": 3,
        "prompt": request.prompt_text(),
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: SyntheticWorkload(input_len=0),
        lambda: SyntheticWorkload(range_ratio=1.0),
        lambda: SharedPrefixWorkload(num_prefixes=0),
        lambda: MtBenchWorkload(output_len=0),
    ],
)
def test_bad_lengths_are_refused(make: object) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()  # type: ignore[operator]
