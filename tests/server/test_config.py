"""models.yaml: valid files load; every bad one names the file, model and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_models_file, parse_models
from server.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_models_yaml_is_valid() -> None:
    models = load_models_file(REPO / "models.yaml")

    model = models.get("smollm2")
    assert model is not None
    assert model.name == "smollm2-135m"
    assert model.source == "builtin:smollm2-135m"
    assert models.get("nothing") is None


def _error(raw: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_models(raw, origin="m.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {"name": "a", "source": "x", "colour": 1},
            "m.yaml: model 'a': colour: unknown key",
        ),
        (
            {"name": "a", "source": "x", "engine": {"max_model_len": -1}},
            "m.yaml: model 'a': engine.max_model_len: "
            "Input should be greater than 0 (got -1)",
        ),
        (
            {"name": "a", "source": "x", "precision": "int3"},
            "model 'a': precision: Input should be",
        ),
        ({"name": "a"}, "model 'a': needs either 'source'"),
        (
            {"name": "a", "source": "x", "endpoint": {"url": "http://h/v1"}},
            "model 'a': has both 'source' and 'endpoint'",
        ),
        ({"name": "a", "source": "x", "quantization": "gptq"}, "set precision to int8"),
        (
            {"name": "a", "source": "x", "precision": "int4", "quantization": "magic"},
            "quantization 'magic' is not one of",
        ),
        (
            {"name": "Bad Name", "source": "x"},
            "model 'Bad Name': name: String should match",
        ),
        ({"source": "x"}, "m.yaml: model #1: name: Field required"),
        (
            {"name": "a", "endpoint": {"url": "ftp://h"}},
            "endpoint.url: String should match",
        ),
    ],
)
def test_bad_models_are_named_with_their_field(model: dict, expected: str) -> None:
    assert expected in _error({"models": [model]})


def test_names_and_aliases_must_be_unique() -> None:
    message = _error(
        {
            "models": [
                {"name": "a", "source": "x", "aliases": ["b"]},
                {"name": "b", "source": "y"},
            ]
        }
    )
    assert "name 'b' of model 'b' is already used by model 'a'" in message


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert "models: Field required" in _error({})
    assert "m.yaml: Input should be a valid dictionary" in _error(None)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_models_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_models_file(broken)


def test_settings_read_the_environment_then_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKENMILL_HOME", str(tmp_path))
    monkeypatch.setenv("TOKENMILL_PORT", "9000")

    settings = Settings.from_env(port="9001", host=None)

    assert (settings.home, settings.port, settings.host) == (
        tmp_path,
        9001,
        "127.0.0.1",
    )
    monkeypatch.setenv("TOKENMILL_PORT", "many")
    with pytest.raises(ConfigError, match=r"setting port \(TOKENMILL_PORT or --port\)"):
        Settings.from_env()
