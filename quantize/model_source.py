"""MODEL on the command line -> a local checkpoint, with its shape checked.

MODEL is a name from models.yaml, a local checkpoint directory, or a hub id
(`org/name`, downloaded when the network allows).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantize.errors import QuantizeError
from server.config import ConfigError, ModelConfig, load_models_file
from server.sources import prepare_sources, resolve_source

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Preferred first: 32 keeps 4-bit quality closest to the original for a few percent
# more bytes than 128 (SmolLM2-135M: 0.44x bf16 with zero points); GGUF Q4 models
# also use blocks of 32, so their weights already sit on such groups.
GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class SourceModel:
    """The checkpoint to quantize and where it came from."""

    name: str
    checkpoint: Path
    config: dict[str, Any]
    # The models.yaml entry, when MODEL named one.
    entry: ModelConfig | None = None

    @property
    def architecture(self) -> str:
        return str((self.config.get("architectures") or ["?"])[0])

    def layer_widths(self) -> dict[str, int]:
        """Input widths of the Linear layers, which a group size must divide."""
        config = self.config
        widths = {"hidden_size": config.get("hidden_size")}
        if config.get("intermediate_size"):
            widths["intermediate_size"] = config["intermediate_size"]
        heads = config.get("num_attention_heads")
        head_dim = config.get("head_dim") or (
            config["hidden_size"] // heads if heads and config.get("hidden_size") else 0
        )
        if heads and head_dim:
            widths["num_attention_heads x head_dim"] = heads * head_dim
        return {name: int(width) for name, width in widths.items() if width}

    def size_bytes(self) -> int:
        return checkpoint_size_bytes(self.checkpoint)


def checkpoint_size_bytes(path: Path) -> int:
    """Bytes of the weight files (safetensors, else PyTorch .bin)."""
    files = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
    return sum(f.stat().st_size for f in files)


def resolve(model: str, config_path: Path, home: Path) -> SourceModel:
    """Find `model`; raises `QuantizeError` naming what was tried and the fix."""
    entry = _models_yaml_entry(model, config_path)
    if entry is not None:
        checkpoint = _entry_checkpoint(entry, home, config_path.parent)
        return _load(entry.name, checkpoint, entry)
    path = Path(model).expanduser()
    if path.is_dir():
        return _load(path.name, path, None)
    if _HUB_ID.match(model) and not path.exists():
        return _load(model.rsplit("/", maxsplit=1)[-1].lower(), _download(model), None)
    raise QuantizeError(
        f"unknown model {model!r}: it is not a name in {config_path}, not a "
        "checkpoint directory, and not a hub id (org/name); pass one of those"
    )


def choose_group_size(source: SourceModel, requested: int | None) -> int:
    """The first of `GROUP_SIZES` dividing every layer width, or `requested` after
    checking that it fits."""
    widths = source.layer_widths()
    fitting = [g for g in GROUP_SIZES if all(w % g == 0 for w in widths.values())]
    if requested is None:
        if not fitting:
            raise QuantizeError(
                f"{source.name}: no group size of {list(GROUP_SIZES)} divides every "
                f"layer width ({widths}); pass --group-size with a divisor of all"
            )
        return fitting[0]
    for name, width in widths.items():
        if requested <= 0 or width % requested:
            options = " or ".join(map(str, fitting)) or "a common divisor"
            raise QuantizeError(
                f"{source.name}: group size {requested} does not divide {name} "
                f"{width}; use {options}"
            )
    return requested


def _models_yaml_entry(model: str, config_path: Path) -> ModelConfig | None:
    if not config_path.is_file():
        return None
    try:
        models = load_models_file(config_path)
    except ConfigError as exc:
        raise QuantizeError(str(exc)) from None
    entry = models.get(model)
    if entry is not None and entry.is_remote:
        raise QuantizeError(
            f"model {model!r} in {config_path} is a remote endpoint; quantize needs "
            "its weights: pass a local checkpoint or a hub id"
        )
    if entry is not None and entry.quantization is not None:
        raise QuantizeError(
            f"model {model!r} in {config_path} is already quantized "
            f"({entry.quantization}); quantize its unquantized source instead"
        )
    return entry


def _entry_checkpoint(entry: ModelConfig, home: Path, config_dir: Path) -> Path:
    try:
        prepare_sources([entry], home)
        source = resolve_source(entry, home, config_dir)
    except ConfigError as exc:
        raise QuantizeError(str(exc)) from None
    path = Path(source)
    return path if path.is_dir() else _download(source)


def _download(hub_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                hub_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
            )
        )
    except Exception as exc:
        raise QuantizeError(
            f"cannot download {hub_id!r} from the model hub ({type(exc).__name__}: "
            f"{str(exc)[:200]}); check the id and the network, or pass a local "
            "checkpoint directory"
        ) from None


def _load(name: str, checkpoint: Path, entry: ModelConfig | None) -> SourceModel:
    config_path = checkpoint / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise QuantizeError(
            f"{checkpoint} is not a Hugging Face checkpoint: cannot read "
            f"{config_path} ({exc}); pass a directory with config.json and weights"
        ) from None
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise QuantizeError(
            f"{checkpoint} is already quantized ({method}); quantize the bf16 or "
            "fp16 original instead"
        )
    source = SourceModel(name, checkpoint.resolve(), config, entry)
    if not source.architecture.endswith("ForCausalLM"):
        raise QuantizeError(
            f"{checkpoint}: architecture {source.architecture!r} is not supported; "
            "quantize handles decoder-only language models (…ForCausalLM)"
        )
    if source.size_bytes() == 0:
        raise QuantizeError(
            f"{checkpoint} has no weights (*.safetensors or *.bin); pass a complete "
            "checkpoint"
        )
    return source
