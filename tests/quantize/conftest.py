"""A tiny stand-in checkpoint with SmolLM2-135M's shape, for the input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "head_dim": 64,
}


@pytest.fixture
def fake_checkpoint(tmp_path: Path) -> Path:
    """config.json of SmolLM2-135M and a placeholder weight file."""
    path = tmp_path / "smol"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    (path / "model.safetensors").write_bytes(b"\0" * 1000)
    return path
