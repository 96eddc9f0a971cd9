"""Where a model's weights come from: `builtin:NAME`, a local path, or a hub id."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

from server import default_model
from server.config import BUILTIN_PREFIX, ConfigError, ModelConfig

logger = logging.getLogger(__name__)

BUILTIN_MODELS = {default_model.DEFAULT_MODEL_NAME}


def _builtin_name(model: ModelConfig) -> str | None:
    if not model.source or not model.source.startswith(BUILTIN_PREFIX):
        return None
    name = model.source.removeprefix(BUILTIN_PREFIX)
    if name not in BUILTIN_MODELS:
        raise ConfigError(
            f"model {model.name!r}: source {model.source!r} is not a built-in model; "
            f"use one of {sorted(BUILTIN_PREFIX + n for n in BUILTIN_MODELS)}"
        )
    return name


def resolve_source(model: ModelConfig, home: Path, config_dir: Path) -> str:
    """What to pass to vLLM's `--model` for `model`."""
    if _builtin_name(model) is not None:
        return str(default_model.checkpoint_dir(home))
    assert model.source is not None  # the schema requires source or endpoint
    path = Path(model.source).expanduser()
    if not path.is_absolute():
        path = config_dir / path
    if path.exists():
        return str(path.resolve())
    if model.source.startswith((".", "/", "~")):
        raise ConfigError(
            f"model {model.name!r}: source path {path} does not exist; fix the "
            "path or prepare the checkpoint first"
        )
    logger.info(
        "model %s: %s is no local path; vLLM treats it as a hub id",
        model.name,
        model.source,
    )
    return model.source


def prepare_sources(
    models: list[ModelConfig], home: Path, console: Console | None = None
) -> None:
    """Prepare every built-in checkpoint that `models` use (fast when done)."""
    for model in models:
        if _builtin_name(model) is not None:
            default_model.prepare_default_model(home, console)
