"""What `bench compare` knows about each model besides its speed: the checkpoint
and its size, the precision, the hardware's $/hour and the quantize report.

The facts come from models.yaml, read with the server's schema so that a
`builtin:` source resolves to the directory the server would load, and from
`--checkpoint NAME=DIR` overrides. The quality figures come from
`quantize_report.json` (written next to a quantized checkpoint, or under
`HOME/models/NAME` for a method applied at load time), read by its keys: bench
does not import `quantize`, whose toolchain a benchmark host need not have.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from server.config import ConfigError, ModelConfig, ModelsFile, load_models_file
from server.sources import resolve_source

logger = logging.getLogger(__name__)

REPORT_NAME = "quantize_report.json"
# The files `quantize` counts as a checkpoint's size, so the two agree.
_WEIGHT_GLOBS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class ModelFacts:
    """One compared model's checkpoint, price and quality; None where unknown."""

    name: str
    precision: str | None = None
    checkpoint: Path | None = None
    checkpoint_bytes: int | None = None
    usd_per_hour: float | None = None
    usd_per_hour_source: str | None = None  # "--usd-per-hour" or "models.yaml"
    report_path: Path | None = None
    # {"before_bytes", "after_bytes", "ratio"} from the quantize report.
    quantize_size: dict[str, Any] | None = None
    # {"texts": {NAME: {"ppl_increase_pct", "mean_kl", "top1_agreement"}},
    #  "gate_verdict", "reference_model"}
    quality: dict[str, Any] | None = None


def parse_checkpoints(items: Sequence[str], models: Sequence[str]) -> dict[str, Path]:
    """`--checkpoint NAME=DIR` options as {NAME: DIR}."""
    checkpoints: dict[str, Path] = {}
    for item in items:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise ValueError(
                f"--checkpoint {item!r} is not NAME=DIR; e.g. --checkpoint "
                "smollm2-135m-int8=~/.local/share/tokenmill/models/smollm2-135m-int8"
            )
        if name not in models:
            raise ValueError(
                f"--checkpoint {item!r} names {name!r}, which is not in --models "
                f"({', '.join(models)}); use one of those names"
            )
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise ValueError(
                f"--checkpoint {item!r}: {path} is not a directory; give the "
                "directory holding the checkpoint's weights"
            )
        checkpoints[name] = path
    return checkpoints


def load_models_yaml(config: Path | None) -> tuple[ModelsFile | None, Path]:
    """models.yaml from `config`, $TOKENMILL_CONFIG or ./models.yaml, and the
    directory its relative sources are under.

    Only an explicitly named file must exist: a benchmark of a remote gateway
    has no local models.yaml, and then knows only what the options say.
    """
    is_explicit = config is not None or bool(os.environ.get("TOKENMILL_CONFIG"))
    path = config or Path(os.environ.get("TOKENMILL_CONFIG") or "models.yaml")
    path = path.expanduser()
    config_dir = path.resolve().parent
    if not is_explicit and not path.is_file():
        logger.info("no %s here; checkpoints and $/hour come from options", path)
        return None, config_dir
    try:
        return load_models_file(path), config_dir
    except ConfigError as exc:
        raise ValueError(
            f"{exc}; fix the file, pass another with --config, or compare without "
            "one (checkpoints by --checkpoint, cost by --usd-per-hour)"
        ) from None


def model_facts(
    name: str,
    models_file: ModelsFile | None,
    config_dir: Path,
    home: Path,
    checkpoint: Path | None = None,
    usd_per_hour: float | None = None,
) -> ModelFacts:
    """Everything known about `name` without sending it a request."""
    entry = models_file.get(name) if models_file is not None else None
    if checkpoint is None and entry is not None:
        checkpoint = _entry_checkpoint(entry, home, config_dir)

    usd_source = "--usd-per-hour" if usd_per_hour is not None else None
    if usd_per_hour is None and entry is not None and entry.hardware is not None:
        usd_per_hour = entry.hardware.usd_per_hour
        usd_source = "models.yaml" if usd_per_hour is not None else None

    report_path = _report_path(name, checkpoint, home)
    report = read_report(report_path) if report_path is not None else None
    precision = entry.precision if entry is not None else _report_precision(report)
    return ModelFacts(
        name=name,
        precision=precision,
        checkpoint=checkpoint,
        checkpoint_bytes=(
            checkpoint_bytes(checkpoint) if checkpoint is not None else None
        ),
        usd_per_hour=usd_per_hour,
        usd_per_hour_source=usd_source,
        report_path=report_path if report is not None else None,
        quantize_size=_report_size(report),
        quality=quality_of(report),
    )


def _entry_checkpoint(entry: ModelConfig, home: Path, config_dir: Path) -> Path | None:
    if entry.is_remote:
        return None
    try:
        source = Path(resolve_source(entry, home, config_dir))
    except ConfigError as exc:
        logger.info("model %s: no local checkpoint (%s)", entry.name, exc)
        return None
    # A hub id, or a builtin model not prepared on this machine.
    return source if source.is_dir() else None


def _report_path(name: str, checkpoint: Path | None, home: Path) -> Path | None:
    candidates = [home / "models" / name / REPORT_NAME]
    if checkpoint is not None:
        candidates.insert(0, checkpoint / REPORT_NAME)
    return next((path for path in candidates if path.is_file()), None)


def checkpoint_bytes(directory: Path) -> int | None:
    """Bytes of the weight files (safetensors, else .bin); None when it has none."""
    for pattern in _WEIGHT_GLOBS:
        if files := list(directory.glob(pattern)):
            return sum(file.stat().st_size for file in files)
    return None


def read_report(path: Path) -> dict[str, Any] | None:
    """A quantize report's JSON, or None (with a warning) when it cannot be read."""
    try:
        report = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        logger.warning("%s: cannot read it (%s); quality shown as unknown", path, exc)
        return None
    if not isinstance(report, dict):
        logger.warning("%s: not a JSON object; quality shown as unknown", path)
        return None
    return report


def quality_of(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per-text perplexity change, KL and top-1 agreement from a quantize report."""
    if report is None:
        return None
    try:
        gate = report["gate"]
        texts = {
            str(text["name"]): {
                "ppl_increase_pct": float(text["ppl_increase_pct"]),
                "mean_kl": float(text["mean_kl"]),
                "top1_agreement": float(text["top1_agreement"]),
            }
            for text in gate["texts"]
        }
        verdict = str(gate["verdict"])
    except (KeyError, TypeError, ValueError) as exc:
        # A report from another version of quantize: show what is known.
        logger.warning(
            "quantize report of %s lacks gate.texts or gate.verdict (%r); quality "
            "shown as unknown",
            report.get("name"),
            exc,
        )
        return None
    source = report.get("source")
    reference = source.get("name") if isinstance(source, dict) else None
    return {"texts": texts, "gate_verdict": verdict, "reference_model": reference}


def _report_size(report: dict[str, Any] | None) -> dict[str, Any] | None:
    size = report.get("size") if report is not None else None
    if not isinstance(size, dict):
        return None
    return {key: size.get(key) for key in ("before_bytes", "after_bytes", "ratio")}


def _report_precision(report: dict[str, Any] | None) -> str | None:
    entry = report.get("models_yaml_entry") if report is not None else None
    precision = entry.get("precision") if isinstance(entry, dict) else None
    return precision if isinstance(precision, str) else None


def with_baseline_quality(
    facts: Sequence[ModelFacts], baseline: str
) -> list[ModelFacts]:
    """`facts` with the baseline's quality set to no change, unless it has a report.

    The baseline is the reference the others are read against, so on every text
    another model's report measured it shows 0% perplexity change, no KL and full
    top-1 agreement; with no report anywhere there is nothing to show.
    """
    text_names = sorted(
        {text for f in facts if f.quality is not None for text in f.quality["texts"]}
    )
    no_change = {"ppl_increase_pct": 0.0, "mean_kl": 0.0, "top1_agreement": 1.0}
    quality = {
        "texts": {text: dict(no_change) for text in text_names},
        "gate_verdict": "baseline",
        "reference_model": baseline,
    }
    return [
        replace(f, quality=quality)
        if f.name == baseline and f.quality is None and text_names
        else f
        for f in facts
    ]
