"""Hosted-API and GPU reference prices: the table tokenmill compares its costs with.

The shipped `data/prices.yaml` is read first; the user's own file (same schema,
usually `$TOKENMILL_HOME/prices.yaml`) then replaces entries key by key. Every entry
carries its `source` and `as_of` date, because these numbers go stale.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from server.config import ConfigError

logger = logging.getLogger(__name__)

SHIPPED_PRICES_PATH = Path(__file__).parent / "data" / "prices.yaml"
USER_PRICES_FILENAME = "prices.yaml"
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


class PricingError(ConfigError):
    """A price file or calibration is unreadable or invalid, or a price is unknown."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ApiPriceFields(_Strict):
    input_usd_per_mtok: float = Field(ge=0)
    cached_input_usd_per_mtok: float | None = Field(None, ge=0)
    cache_write_usd_per_mtok: float | None = Field(None, ge=0)
    cache_write_1h_usd_per_mtok: float | None = Field(None, ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    batch_discount: float | None = Field(None, ge=0, lt=1)
    batch_discount_verified: bool = False
    source: str = Field(min_length=1)
    as_of: date
    note: str | None = None


class ApiPrice(_ApiPriceFields):
    """One hosted model's list prices in USD per million tokens, keyed
    "provider/model"."""

    key: str


class GpuPrice(_Strict):
    """The on-demand rental range for one GPU, USD per GPU-hour."""

    low_usd_per_hour: float = Field(ge=0)
    high_usd_per_hour: float = Field(ge=0)
    source: str = Field(min_length=1)
    as_of: date
    note: str | None = None

    @model_validator(mode="after")
    def _check_range(self) -> GpuPrice:
        if self.low_usd_per_hour > self.high_usd_per_hour:
            raise ValueError(
                f"low_usd_per_hour {self.low_usd_per_hour} is above "
                f"high_usd_per_hour {self.high_usd_per_hour}; swap them"
            )
        return self


class _PriceFile(_Strict):
    apis: dict[str, _ApiPriceFields] = {}
    gpus: dict[str, GpuPrice] = {}

    @field_validator("apis")
    @classmethod
    def _check_api_keys(
        cls, apis: dict[str, _ApiPriceFields]
    ) -> dict[str, _ApiPriceFields]:
        for key in apis:
            provider, _, model = key.partition("/")
            if not (provider and model and set(provider + model) <= _KEY_CHARS):
                raise ValueError(
                    f"key {key!r} must be 'provider/model' in lowercase letters, "
                    "digits, '.', '_' and '-', e.g. 'openai/gpt-4o-mini'"
                )
        return apis


class PriceTable:
    """Hosted-API and GPU reference prices: the shipped table, then user overrides."""

    def __init__(self, apis: dict[str, ApiPrice], gpus: dict[str, GpuPrice]) -> None:
        self.apis = apis
        self.gpus = gpus

    @classmethod
    def load(cls, override_path: Path | None = None) -> PriceTable:
        """The shipped table; entries of `override_path` replace it key by key."""
        files = [SHIPPED_PRICES_PATH]
        if override_path is not None:
            files.append(override_path)
        apis: dict[str, ApiPrice] = {}
        gpus: dict[str, GpuPrice] = {}
        for path in files:
            price_file = _read_price_file(path)
            if replaced := sorted(apis.keys() & price_file.apis.keys()):
                logger.debug("%s replaces shipped prices of %s", path, replaced)
            for key, fields in price_file.apis.items():
                apis[key] = ApiPrice(key=key, **fields.model_dump())
            gpus.update(price_file.gpus)
        return cls(apis, gpus)

    @classmethod
    def for_home(cls, home: Path) -> PriceTable:
        """The shipped table, overridden by `home/prices.yaml` when that exists."""
        override_path = home / USER_PRICES_FILENAME
        return cls.load(override_path if override_path.exists() else None)

    def get(self, key: str) -> ApiPrice:
        """The entry for `key`, e.g. "openai/gpt-4o-mini"."""
        try:
            return self.apis[key]
        except KeyError:
            raise PricingError(
                _unknown_key_message("API price", key, self.apis)
            ) from None

    def gpu(self, name: str) -> GpuPrice:
        """The rental range for GPU `name`, e.g. "h100-sxm"."""
        try:
            return self.gpus[name]
        except KeyError:
            raise PricingError(
                _unknown_key_message("GPU price", name, self.gpus)
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.apis

    def __len__(self) -> int:
        return len(self.apis)


def _unknown_key_message(kind: str, key: str, known: Iterable[str]) -> str:
    matches = difflib.get_close_matches(key.lower(), list(known), n=3, cutoff=0.6)
    hint = (
        f"did you mean {', '.join(repr(m) for m in matches)}?"
        if matches
        else f"known: {', '.join(sorted(known))}."
    )
    return (
        f"unknown {kind} {key!r}; {hint} Add or correct entries in "
        f"$TOKENMILL_HOME/{USER_PRICES_FILENAME} (schema: {SHIPPED_PRICES_PATH})"
    )


def _read_price_file(path: Path) -> _PriceFile:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PricingError(f"{path}: cannot read price file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PricingError(f"{path}: not valid YAML: {exc}") from exc
    except ValueError as exc:
        # PyYAML parses date-shaped values itself and fails on impossible ones.
        raise PricingError(
            f"{path}: a date is not a real date ({exc}); write as_of as YYYY-MM-DD"
        ) from exc
    try:
        return _PriceFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise PricingError(_describe(exc, path)) from None


def _describe(exc: ValidationError, origin: Path) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = f"{origin}"
        if len(loc) >= 2 and loc[0] in ("apis", "gpus"):
            where += f": {loc[0]} entry {loc[1]!r}"
            loc = loc[2:]
        field = ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field; see the schema in {SHIPPED_PRICES_PATH}"
        elif error["type"] not in ("missing", "model_type") and not isinstance(
            error.get("input"), dict
        ):
            message += f" (got {error['input']!r})"
        lines.append(f"{where}: {field + ': ' if field else ''}{message}")
    return "\n".join(lines)
