"""The schema of `models.yaml`: which models tokenmill serves, and how.

One pydantic model is the single source of truth; loading turns every validation
problem into one `ConfigError` line that names the file, the model and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Precision = Literal["bf16", "fp16", "fp8", "int8", "int4"]

# Methods vLLM must be told about on its command line; compressed-tensors, GPTQ and
# AWQ checkpoints describe themselves in their config.json.
RUNTIME_QUANTIZATION = {"bitsandbytes", "fp8"}
QUANTIZATION_METHODS = {"compressed-tensors", "gptq", "awq", *RUNTIME_QUANTIZATION}

BUILTIN_PREFIX = "builtin:"
_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ConfigError(Exception):
    """`models.yaml` could not be read or is not valid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineOptions(_Strict):
    """Options passed to the vLLM engine that serves one model."""

    max_model_len: int | None = Field(None, gt=0)
    # On the CPU this is the KV-cache size vLLM reserves; on a GPU it replaces
    # gpu_memory_utilization as an absolute budget.
    kv_cache_gib: float | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = False
    startup_timeout_s: float = Field(900.0, gt=0)
    extra_args: list[str] = []
    env: dict[str, str] = {}


class Hardware(_Strict):
    """What the model runs on, and what that costs per hour."""

    name: str = Field(min_length=1)
    usd_per_hour: float | None = Field(None, ge=0)


class TokenPrices(_Strict):
    """Explicit per-token prices, in dollars per million tokens."""

    input_usd_per_mtok: float = Field(ge=0)
    cached_input_usd_per_mtok: float | None = Field(None, ge=0)
    output_usd_per_mtok: float = Field(ge=0)


class RemoteEndpoint(_Strict):
    """An OpenAI-compatible server tokenmill forwards to instead of starting one."""

    url: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$")
    api_key_env: str | None = None
    # The name the remote server knows the model by, when it differs from ours.
    model: str | None = None


class ModelConfig(_Strict):
    """One served model."""

    name: str = Field(pattern=_NAME_PATTERN)
    source: str | None = None
    precision: Precision = "bf16"
    quantization: str | None = None
    aliases: list[str] = []
    engine: EngineOptions = EngineOptions()
    endpoint: RemoteEndpoint | None = None
    hardware: Hardware | None = None
    # Overrides the prices derived from hardware cost and a calibration.
    prices: TokenPrices | None = None
    # The API model whose list prices this one is compared with, as
    # "provider/model" from prices.yaml, e.g. "openai/gpt-4o-mini".
    api_reference: str | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelConfig:
        if self.endpoint is None and not self.source:
            raise ValueError(
                "needs either 'source' (a local path, a hub id or 'builtin:NAME') "
                "or 'endpoint' (a remote server's URL)"
            )
        if self.endpoint is not None and self.source:
            raise ValueError("has both 'source' and 'endpoint'; keep one")
        if self.quantization is not None:
            if self.quantization not in QUANTIZATION_METHODS:
                raise ValueError(
                    f"quantization {self.quantization!r} is not one of "
                    f"{sorted(QUANTIZATION_METHODS)}"
                )
            if self.precision in ("bf16", "fp16"):
                raise ValueError(
                    f"precision {self.precision!r} with quantization "
                    f"{self.quantization!r}; set precision to int8, int4 or fp8"
                )
        for alias in self.aliases:
            if not re.match(_NAME_PATTERN, alias):
                raise ValueError(f"alias {alias!r} must match {_NAME_PATTERN}")
        return self

    @property
    def is_remote(self) -> bool:
        return self.endpoint is not None

    @property
    def served_names(self) -> list[str]:
        return [self.name, *self.aliases]


class ModelsFile(_Strict):
    """The whole `models.yaml`."""

    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique_names(self) -> ModelsFile:
        seen: dict[str, str] = {}
        for model in self.models:
            for name in model.served_names:
                if name in seen:
                    raise ValueError(
                        f"name {name!r} of model {model.name!r} is already used by "
                        f"model {seen[name]!r}; names and aliases must be unique"
                    )
                seen[name] = model.name
        return self

    def get(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if name in model.served_names:
                return model
        return None


def load_models_file(path: Path) -> ModelsFile:
    """Read and validate `path`; raises `ConfigError` with one readable line."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read it ({exc.strerror}); "
            "pass --config or set TOKENMILL_CONFIG"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_models(raw, origin=str(path))


def parse_models(raw: Any, origin: str = "models.yaml") -> ModelsFile:
    """Validate already-parsed YAML data; `origin` names it in errors."""
    try:
        return ModelsFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, origin)) from None


def _describe(exc: ValidationError, raw: Any, origin: str) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = origin
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            where += f": model {_model_label(raw, loc[1])}"
            loc = loc[2:]
        field = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the README"
        elif "input" in error and error["type"] not in ("missing", "model_type"):
            message += f" (got {error['input']!r})"
        lines.append(f"{where}: {field + ': ' if field else ''}{message}")
    return "\n".join(lines)


def _model_label(raw: Any, index: int) -> str:
    try:
        name = raw["models"][index]["name"]
    except (KeyError, IndexError, TypeError):
        name = None
    return repr(name) if isinstance(name, str) else f"#{index + 1}"
