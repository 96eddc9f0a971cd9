"""What tokens cost: list prices of served models, and hosted-API prices to compare.

A served model's list price comes from one of two places, first match wins:
explicit `prices` in models.yaml, or "calibrated" — the hardware's `usd_per_hour`
times the engine-seconds a calibration attributes to one token. Otherwise the price
is unknown and `ModelPricing.reason` says how to make it known; tokenmill never
guesses one.

Hosted-API prices (`PriceTable`, in `server.price_table`) and the calibration file
(`server.calibration`) live in modules of their own; this module re-exports them, so
`server.pricing` is the one import for everything about prices.

Cached tokens are always a subset of prompt tokens: a request with 1,000 prompt
tokens of which 800 were cached pays 200 at the prompt rate and 800 at the cached
rate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.calibration import (
    Calibration,
    CalibrationError,
    calibration_path,
    load_calibration,
    save_calibration,
)
from server.config import ModelConfig
from server.price_table import (
    USER_PRICES_FILENAME,
    ApiPrice,
    GpuPrice,
    PriceTable,
    PricingError,
)

__all__ = [
    "ApiPrice",
    "Calibration",
    "CalibrationError",
    "GpuPrice",
    "ModelPricing",
    "PriceSource",
    "PriceTable",
    "PricingError",
    "api_equivalent_cost_usd",
    "calibration_path",
    "load_calibration",
    "save_calibration",
]

logger = logging.getLogger(__name__)

_TOKENS_PER_MTOK = 1_000_000
_S_PER_HOUR = 3600.0

PriceSource = Literal["explicit", "calibrated", "unknown"]


@dataclass(frozen=True)
class ModelPricing:
    """A served model's list prices in USD per million tokens; None when unknown."""

    model: str
    source: PriceSource
    prompt_usd_per_mtok: float | None = None
    cached_prompt_usd_per_mtok: float | None = None
    completion_usd_per_mtok: float | None = None
    # Why the prices are unknown, and what to do about it.
    reason: str | None = None
    calibration: Calibration | None = None

    @classmethod
    def for_model(
        cls,
        model: ModelConfig,
        calibration: Calibration | None,
        *,
        calibration_path: Path | None = None,
    ) -> ModelPricing:
        """Prices from models.yaml, or from hardware cost and `calibration`."""
        usable, problem = _check_calibration(model, calibration, calibration_path)
        if model.prices is not None:
            prices = model.prices
            cached = prices.cached_input_usd_per_mtok
            return cls(
                model.name,
                "explicit",
                prices.input_usd_per_mtok,
                cached if cached is not None else prices.input_usd_per_mtok,
                prices.output_usd_per_mtok,
                calibration=usable,
            )

        usd_per_hour = model.hardware.usd_per_hour if model.hardware else None
        if usd_per_hour is None:
            reason = (
                f"model {model.name!r} has no hardware.usd_per_hour in models.yaml; "
                "set it (e.g. hardware: {name: h100-sxm, usd_per_hour: 2.5}) or "
                "give explicit prices"
            )
            return cls(model.name, "unknown", reason=reason, calibration=usable)
        if usable is None:
            return cls(model.name, "unknown", reason=problem)

        usd_per_mtok_per_s = usd_per_hour / _S_PER_HOUR * _TOKENS_PER_MTOK
        return cls(
            model.name,
            "calibrated",
            usd_per_mtok_per_s * usable.prompt_s_per_token,
            usd_per_mtok_per_s * usable.cached_prompt_s_per_token,
            usd_per_mtok_per_s * usable.completion_s_per_token,
            calibration=usable,
        )

    @classmethod
    def from_home(cls, model: ModelConfig, home: Path) -> ModelPricing:
        """Like `for_model`, with the calibration read from under `home`."""
        path = calibration_path(home, model.name)
        try:
            calibration = load_calibration(path) if path.exists() else None
        except CalibrationError as exc:
            # A broken calibration costs the model its calibrated prices, not the
            # gateway its start.
            logger.warning("%s", exc)
            return cls(model.name, "unknown", reason=str(exc))
        return cls.for_model(model, calibration, calibration_path=path)

    @property
    def is_known(self) -> bool:
        return self.source != "unknown"

    def list_cost_usd(
        self, num_prompt: int, num_cached: int, num_completion: int
    ) -> float | None:
        """The request's cost at these list prices; None when they are unknown."""
        num_uncached = _num_uncached(num_prompt, num_cached, num_completion)
        if (
            self.prompt_usd_per_mtok is None
            or self.cached_prompt_usd_per_mtok is None
            or self.completion_usd_per_mtok is None
        ):
            return None
        return (
            num_uncached * self.prompt_usd_per_mtok
            + num_cached * self.cached_prompt_usd_per_mtok
            + num_completion * self.completion_usd_per_mtok
        ) / _TOKENS_PER_MTOK

    def work_s(
        self, num_prompt: int, num_cached: int, num_completion: int
    ) -> float | None:
        """Calibrated engine-seconds the request used; None without a calibration."""
        num_uncached = _num_uncached(num_prompt, num_cached, num_completion)
        if self.calibration is None:
            return None
        return (
            num_uncached * self.calibration.prompt_s_per_token
            + num_cached * self.calibration.cached_prompt_s_per_token
            + num_completion * self.calibration.completion_s_per_token
        )

    def cache_savings_usd(self, num_cached: int) -> float | None:
        """What `num_cached` prefix-cache hits saved at list prices."""
        if self.prompt_usd_per_mtok is None or self.cached_prompt_usd_per_mtok is None:
            return None
        saved_usd_per_mtok = self.prompt_usd_per_mtok - self.cached_prompt_usd_per_mtok
        return num_cached * saved_usd_per_mtok / _TOKENS_PER_MTOK


def _check_calibration(
    model: ModelConfig, calibration: Calibration | None, path: Path | None
) -> tuple[Calibration | None, str]:
    """The calibration if it fits `model`, else None and why not."""
    where = f" at {path}" if path is not None else ""
    rerun = f"run `tokenmill bench calibrate {model.name}`"
    if calibration is None:
        return None, f"no calibration{where} for model {model.name!r}; {rerun}"
    if calibration.model != model.name:
        return None, (
            f"the calibration{where} is for model {calibration.model!r}, not "
            f"{model.name!r}; {rerun}"
        )
    hardware = model.hardware.name if model.hardware else None
    if hardware is not None and calibration.hardware != hardware:
        return None, (
            f"the calibration{where} was measured on {calibration.hardware!r}, but "
            f"models.yaml puts model {model.name!r} on {hardware!r}; {rerun} there"
        )
    return calibration, ""


_warned_unverified_batch: set[str] = set()


def api_equivalent_cost_usd(
    entry: ApiPrice,
    num_prompt: int,
    num_cached: int,
    num_completion: int,
    batch: bool = False,
) -> float:
    """What the same tokens would cost at the hosted API `entry`.

    Cached tokens pay the provider's cached-input (cache read) rate where it has
    one, else the input rate. No cache-write premium is charged: the gateway cannot
    know whether the provider would have written these prompts to its cache.
    """
    num_uncached = _num_uncached(num_prompt, num_cached, num_completion)
    cached_rate = entry.cached_input_usd_per_mtok
    if cached_rate is None:
        cached_rate = entry.input_usd_per_mtok
    cost_usd = (
        num_uncached * entry.input_usd_per_mtok
        + num_cached * cached_rate
        + num_completion * entry.output_usd_per_mtok
    ) / _TOKENS_PER_MTOK
    if not batch:
        return cost_usd

    if entry.batch_discount is None:
        raise PricingError(
            f"API price {entry.key!r} has no batch_discount ({entry.source}); price "
            f"it with batch=False, or add batch_discount to its entry in "
            f"$TOKENMILL_HOME/{USER_PRICES_FILENAME}"
        )
    if not entry.batch_discount_verified and entry.key not in _warned_unverified_batch:
        _warned_unverified_batch.add(entry.key)
        logger.warning(
            "batch discount %s of %s is not verified against the provider's page",
            entry.batch_discount,
            entry.key,
        )
    return cost_usd * (1 - entry.batch_discount)


def _num_uncached(num_prompt: int, num_cached: int, num_completion: int) -> int:
    if min(num_prompt, num_cached, num_completion) < 0:
        raise ValueError(
            f"token counts must not be negative (prompt {num_prompt}, cached "
            f"{num_cached}, completion {num_completion})"
        )
    if num_cached > num_prompt:
        raise ValueError(
            f"num_cached {num_cached} exceeds num_prompt {num_prompt}; cached "
            "tokens are a subset of prompt tokens, so pass the full prompt count"
        )
    return num_prompt - num_cached
