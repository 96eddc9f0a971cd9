"""The quantization lever's capacity factor, as `tokenmill bench compare` measured it.

A compare result (`bench compare --result-json FILE`, or the history's latest
run of kind 'compare' whose model is the baseline) holds one entry per variant:
`model`, `precision`, `throughput_ratio` (its output tokens/s over the
baseline's, medians over rounds at one concurrency) and `quality`
(`{"texts": {TEXT: {"ppl_increase_pct", ...}}, "gate_verdict"}`, or null when
the variant has no quantize report).

The default variant is the fastest whose quantize quality gate passed: a failed
gate means worse answers, which no capacity saving pays for unless someone
decides so, so such a variant (or one of unknown quality) is taken only when
named with --quantized-variant, and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from server.breakeven.bench_history import HistoryRun
from server.breakeven.errors import BreakEvenError


@dataclass(frozen=True)
class QuantizedVariant:
    """A quantized model against its baseline: speed-up, quality, and whence."""

    model: str
    precision: str | None
    baseline: str
    capacity_factor: float
    # "pass" or "fail" from the quantize gate; None when its quality is unknown.
    gate_verdict: str | None
    ppl_increase_pct: dict[str, float] = field(default_factory=dict)
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The precision, else the served name, for the lever's setting."""
        return self.precision or self.model

    def quality_summary(self) -> str:
        """The perplexity change per text, e.g. 'perplexity +1.2% wiki'."""
        if not self.ppl_increase_pct:
            return "quality unknown (no quantize report)"
        return f"perplexity {_changes(self.ppl_increase_pct)}"


def from_compare_file(
    path: Path, variant: str | None = None, model: str | None = None
) -> QuantizedVariant:
    """A variant of a `bench compare --result-json` file; `model`, when known,
    is the self-hosted model the capacity is about, checked against the baseline."""
    try:
        result = json.loads(path.read_text())
    except OSError as exc:
        raise BreakEvenError(
            f"{path}: cannot read the compare result ({exc.strerror})"
        ) from None
    except json.JSONDecodeError as exc:
        raise BreakEvenError(
            f"{path}: not JSON ({exc.msg}, line {exc.lineno}); pass the file "
            "`tokenmill bench compare --result-json FILE` wrote"
        ) from None
    if not isinstance(result, dict) or result.get("kind") != "compare":
        raise BreakEvenError(
            f"{path}: not a `bench compare` result (its kind is "
            f"{result.get('kind') if isinstance(result, dict) else None!r}); pass "
            "the file `tokenmill bench compare --result-json FILE` wrote"
        )
    environment = result.get("environment") or {}
    source = (
        f"bench compare {path} of {result.get('created_at', 'unknown date')} (git "
        f"{environment.get('git_revision') or 'unknown'})"
    )
    chosen = _pick(str(path), result, variant, source)
    if model is not None and model != chosen.baseline:
        note = (
            f"the comparison's baseline is {chosen.baseline!r}, not {model!r} whose "
            "capacity it scales; compare against that model for a factor that fits"
        )
        chosen = replace(chosen, notes=(*chosen.notes, note))
    return chosen


def from_compare_run(run: HistoryRun, variant: str | None = None) -> QuantizedVariant:
    """A variant of a `bench compare` stored in the history."""
    return _pick(f"{run.path}: run {run.id}", run.result, variant, run.describe())


def _pick(
    where: str, result: dict[str, Any], name: str | None, source: str
) -> QuantizedVariant:
    variants = result.get("variants")
    baseline = result.get("baseline")
    if not isinstance(variants, list) or not all(
        isinstance(v, dict) and isinstance(v.get("model"), str) for v in variants
    ):
        raise BreakEvenError(
            f"{where}: no list of variants with their model names; is it a "
            "`tokenmill bench compare` result?"
        )
    others = [v for v in variants if v["model"] != baseline]
    names = ", ".join(repr(v["model"]) for v in others) or "none"
    if name is not None:
        chosen = next((v for v in variants if v["model"] == name), None)
        if chosen is None:
            raise BreakEvenError(
                f"{where}: --quantized-variant {name!r} is not in the comparison; "
                f"its variants are {names}"
            )
        if name == baseline:
            raise BreakEvenError(
                f"{where}: --quantized-variant {name!r} is the baseline, whose factor "
                f"is 1; name a quantized variant: {names}"
            )
    else:
        passing = [v for v in others if _verdict(v) == "pass"]
        if not passing:
            seen = "; ".join(f"{v['model']}: {_gate(v)}" for v in others) or "none"
            raise BreakEvenError(
                f"{where}: no variant passed the quality gate ({seen}); a failed gate "
                "means worse answers, so none is taken by default. Name one with "
                "--quantized-variant NAME to price it anyway, or quantize again"
            )
        chosen = max(passing, key=lambda v: _ratio(v) or 0.0)
    return _variant(where, chosen, str(baseline), source, result)


def _variant(
    where: str,
    chosen: dict[str, Any],
    baseline: str,
    source: str,
    result: dict[str, Any],
) -> QuantizedVariant:
    ratio = _ratio(chosen)
    if ratio is None:
        raise BreakEvenError(
            f"{where}: variant {chosen['model']!r} has no throughput_ratio (its "
            "throughput or the baseline's was not measured: every request failed); "
            "rerun `tokenmill bench compare`"
        )
    config = result.get("config") or {}
    notes = [
        f"the factor is {chosen['model']}'s output tokens/s over {baseline}'s at "
        f"concurrency {config.get('concurrency', '?')}, not at your latency SLO; "
        "a bench run of each at the SLO measures it there"
    ]
    verdict = _verdict(chosen)
    if verdict != "pass":
        notes.append(
            f"{chosen['model']} is priced only because --quantized-variant named it "
            f"({_gate(chosen)}): its answers may be worse than {baseline}'s"
        )
    return QuantizedVariant(
        model=chosen["model"],
        precision=chosen.get("precision"),
        baseline=baseline,
        capacity_factor=ratio,
        gate_verdict=verdict,
        ppl_increase_pct=_ppl(chosen),
        source=source,
        notes=tuple(notes),
    )


def _verdict(variant: dict[str, Any]) -> str | None:
    quality = variant.get("quality")
    verdict = quality.get("gate_verdict") if isinstance(quality, dict) else None
    return verdict if isinstance(verdict, str) else None


def _ppl(variant: dict[str, Any]) -> dict[str, float]:
    quality = variant.get("quality")
    texts = quality.get("texts") if isinstance(quality, dict) else None
    return {
        str(text): float(figures["ppl_increase_pct"])
        for text, figures in (texts or {}).items()
        if isinstance(figures, dict)
        and isinstance(figures.get("ppl_increase_pct"), int | float)
    }


def _gate(variant: dict[str, Any]) -> str:
    verdict = _verdict(variant)
    if verdict is None:
        return "quality is unknown (no quantize report)"
    changes = _changes(_ppl(variant))
    return f"quality gate: {verdict}" + (f", perplexity {changes}" if changes else "")


def _changes(ppl_increase_pct: dict[str, float]) -> str:
    return ", ".join(
        f"{pct:+.1f}% {text}" for text, pct in sorted(ppl_increase_pct.items())
    )


def _ratio(variant: dict[str, Any]) -> float | None:
    ratio = variant.get("throughput_ratio")
    return float(ratio) if isinstance(ratio, int | float) and ratio > 0 else None
