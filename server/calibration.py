"""The calibration file: engine-seconds per token of one model on one machine.

`tokenmill bench calibrate` measures it and writes it to
`$TOKENMILL_HOME/calibrations/<model>.json`; pricing multiplies it by the hardware's
dollars per hour to get list prices, and metering uses it to weigh requests.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.config import ConfigError


class CalibrationError(ConfigError):
    """A calibration file is unreadable or invalid."""


class Calibration(BaseModel):
    """Engine-seconds one token costs a model on one piece of hardware.

    Written by `tokenmill bench calibrate`. The seconds are the whole engine's time
    divided among the tokens it processed at `reference_concurrency` — a token's
    share of a busy engine, not its latency.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    hardware: str = Field(min_length=1)
    prompt_s_per_token: float = Field(ge=0)
    completion_s_per_token: float = Field(ge=0)
    # A prefix-cache hit reuses stored KV blocks and skips that token's prefill
    # compute, so its cost is taken as zero unless a calibration measured it.
    cached_prompt_s_per_token: float = Field(0.0, ge=0)
    reference_concurrency: int = Field(ge=1)
    fit_residual_rel_rms: float = Field(ge=0)
    num_fit_points: int = Field(ge=1)
    created_at: datetime
    tokenmill_version: str
    engine_version: str


def calibration_path(home: Path, model: str) -> Path:
    """Where the calibration of `model` lives under tokenmill's home."""
    if not model or model.startswith(".") or Path(model).name != model:
        raise ValueError(
            f"model name {model!r} cannot name a calibration file; use the model's "
            "name from models.yaml"
        )
    return home / "calibrations" / f"{model}.json"


def load_calibration(path: Path) -> Calibration:
    """Read and validate a calibration file; `CalibrationError` names the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalibrationError(
            f"{path}: cannot read calibration ({exc.strerror}); run "
            f"`tokenmill bench calibrate {path.stem}`"
        ) from exc
    try:
        return Calibration.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors()
        )
        raise CalibrationError(
            f"{path}: invalid calibration ({problems}); rerun "
            f"`tokenmill bench calibrate {path.stem}`"
        ) from None


def save_calibration(calibration: Calibration, path: Path) -> None:
    """Write `calibration` to `path`, replacing any older one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(calibration.model_dump_json(indent=2) + "\n")
    # A reader sees the old file or the new one, never half of either.
    os.replace(partial, path)
