"""`--register`: add the quantized checkpoint to models.yaml as a new model.

The entry is appended as text, so the file's comments and layout stay as they are;
the whole file is validated with the server's schema before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from quantize.errors import QuantizeError
from server.config import ConfigError, parse_models


def register(config_path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` to `config_path`'s model list; raise if the result is invalid."""
    try:
        text = config_path.read_text()
    except OSError as exc:
        raise QuantizeError(
            f"cannot read {config_path} to register the model ({exc.strerror}); "
            "pass --config with the models.yaml to add it to"
        ) from None
    data = yaml.safe_load(text) or {}
    data.setdefault("models", []).append(entry)
    try:
        parse_models(data, origin=str(config_path))
    except ConfigError as exc:
        raise QuantizeError(
            f"cannot register {entry['name']!r}: {exc}; pass --name with another name"
        ) from None

    block = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False)
    indented = "".join(f"  {line}" for line in block.splitlines(keepends=True))
    if "models" not in (yaml.safe_load(text) or {}):
        indented = "models:\n" + indented
    separator = "" if text.endswith("\n") or not text else "\n"
    config_path.write_text(f"{text}{separator}{indented}")
