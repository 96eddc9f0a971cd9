from pathlib import Path

import pytest

from quantize.errors import QuantizeError
from quantize.register import register
from server.config import load_models_file

MODELS_YAML = """\
# comments survive registration
models:
  - name: smollm2-135m
    source: builtin:smollm2-135m
"""


def test_register_appends_a_valid_model_and_keeps_comments(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(MODELS_YAML)
    entry = {
        "name": "smollm2-135m-w8a8",
        "source": str(tmp_path / "ckpt"),
        "precision": "int8",
        "quantization": "compressed-tensors",
        "engine": {"max_model_len": 1024},
    }
    register(config, entry)
    assert config.read_text().startswith("# comments survive registration")
    model = load_models_file(config).get("smollm2-135m-w8a8")
    assert model is not None
    assert model.quantization == "compressed-tensors"
    assert model.engine.max_model_len == 1024


def test_register_refuses_a_taken_name(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(MODELS_YAML)
    entry = {"name": "smollm2-135m", "source": "/x", "precision": "int8"}
    with pytest.raises(QuantizeError, match=r"already used.*pass --name"):
        register(config, entry)
    assert config.read_text() == MODELS_YAML
