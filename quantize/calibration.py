"""Calibration samples: token windows cut from a text file, or chats from JSONL.

Used in the toolchain environment with the checkpoint's tokenizer. A `.jsonl` file
holds one conversation per line, either OpenAI-style `{"messages": [...]}` or
MT-Bench-style `{"turns": [...]}` (user turns only); anything else is plain text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_CALIB_PATH = DATA_DIR / "wikitext2-valid.txt"


def load_samples(
    path: Path, tokenizer: Any, num_samples: int, seq_len: int
) -> list[list[int]]:
    """Up to `num_samples` token-id lists of at most `seq_len` tokens (0: all)."""
    if path.suffix == ".jsonl":
        samples = [
            ids[:seq_len] for ids in _chat_token_ids(path, tokenizer) if len(ids) > 1
        ]
    else:
        ids = tokenizer(path.read_text(), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        samples = [
            ids[start : start + seq_len]
            for start in range(0, len(ids) - seq_len + 1, seq_len)
        ]
    if not samples:
        raise ValueError(
            f"{path} gives no calibration sample of {seq_len} tokens; pass a longer "
            "text, or chats as JSONL"
        )
    return samples[:num_samples] if num_samples > 0 else samples


def _chat_token_ids(path: Path, tokenizer: Any) -> list[list[int]]:
    conversations = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = record.get("messages") or [
                {"role": "user", "content": turn} for turn in record["turns"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(
                f"{path}:{number}: expected a JSON object with 'messages' (a chat) "
                "or 'turns' (user turns); fix the line or pass plain text"
            ) from None
        conversations.append(_render(tokenizer, messages))
    return conversations


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        text = "\n\n".join(message["content"] for message in messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
