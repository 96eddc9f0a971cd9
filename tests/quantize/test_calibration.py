import json
from pathlib import Path

import pytest

from quantize.calibration import DEFAULT_CALIB_PATH, load_samples


class _WordTokenizer:
    chat_template = "{{ messages }}"

    def __call__(self, text: str, **_: bool) -> dict:
        return {"input_ids": [len(word) for word in text.split()]}

    def apply_chat_template(self, messages: list, tokenize: bool = False) -> str:
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages)


def test_text_is_cut_into_full_windows() -> None:
    samples = load_samples(DEFAULT_CALIB_PATH, _WordTokenizer(), 3, 16)
    assert [len(s) for s in samples] == [16, 16, 16]


def test_chat_jsonl_gives_one_sample_per_conversation(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi there"}]})
        + "\n"
        + json.dumps({"turns": ["one question", "and another"]})
        + "\n"
    )
    samples = load_samples(path, _WordTokenizer(), 0, 512)
    assert len(samples) == 2


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text('{"prompt": "no messages"}\n')
    with pytest.raises(ValueError, match=r"chats.jsonl:1: expected a JSON object"):
        load_samples(path, _WordTokenizer(), 0, 512)
