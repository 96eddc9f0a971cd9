"""Capacity: how many tokens one GPU serves per second at the user's latency SLO.

Four sources, by hand, from a file or from the bench history:
- `--capacity-tokens-per-s N`: prompt plus output tokens per second per GPU.
- `--prompt-tokens-per-s P --output-tokens-per-s O`: the two rates apart, as a
  calibration has them; a request then costs prompt/P + output/O GPU-seconds.
- `--capacity-file FILE`: a vLLM benchmark result (`vllm bench serve
  --save-result`; `--append-result` JSON Lines or a JSON list hold a sweep), a
  `tokenmill bench run --result-json` result (its `points` are the sweep, under
  the same key names), or a tokenmill calibration
  (`$TOKENMILL_HOME/calibrations/MODEL.json`).
- `--capacity-from-history [DB]`: the latest `tokenmill bench run` of the model
  (and hardware) in the bench history (see `bench_history`), its points read as
  a sweep.

Keys read from a vLLM result (vllm 0.32, `vllm/benchmarks/serve.py`):
`total_token_throughput` (prompt + output tokens/s, required), `output_throughput`,
`total_input_tokens`, `total_output_tokens`, `request_throughput`,
`request_goodput` (requests/s meeting `--goodput` SLOs; null without them),
`p99_ttft_ms`, `p99_tpot_ms`, `max_concurrency`, `failed`, `model_id`, and — from
`--metadata num_gpus=N` — `num_gpus` (or `tensor_parallel_size`). A run with
goodput counts only the share of its throughput that met the SLO. Of a sweep,
the fastest run meeting `--slo-p99-ttft-ms` / `--slo-p99-tpot-ms` is taken.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.breakeven.bench_history import HistoryRun
from server.breakeven.errors import BreakEvenError
from server.breakeven.usage import UsageLine

# A measurement whose output share differs from the bill's by more than this
# factor says little about the bill: decode costs far more per token than prefill.
_MIX_WARNING_FACTOR = 2.0


@dataclass(frozen=True)
class Capacity:
    """Tokens one GPU serves per second at the SLO, prompt and output apart."""

    prompt_tokens_per_s: float
    output_tokens_per_s: float
    source: str
    # A prefix-cache hit skips the token's prefill; this is what it still costs,
    # as a share of an uncached prompt token (0 unless a calibration measured it).
    cached_prompt_work: float = 0.0
    # Output tokens / all tokens in the measurement, for a blended rate.
    measured_output_share: float | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("prompt_tokens_per_s", "output_tokens_per_s"):
            if not getattr(self, name) > 0:
                raise BreakEvenError(
                    f"capacity {name} is {getattr(self, name)}; give a measured "
                    "rate above 0 tokens/s per GPU"
                )
        if not 0 <= self.cached_prompt_work <= 1:
            raise BreakEvenError(
                f"--cached-prompt-work {self.cached_prompt_work} must be 0 to 1 (the "
                "share of an uncached prompt token's work that a cache hit costs)"
            )

    @classmethod
    def blended(cls, tokens_per_s: float, source: str, **kwargs: Any) -> Capacity:
        """One rate for prompt and output tokens alike."""
        return cls(tokens_per_s, tokens_per_s, source, **kwargs)

    @property
    def is_blended(self) -> bool:
        return self.prompt_tokens_per_s == self.output_tokens_per_s

    def gpu_s(self, line: UsageLine) -> float:
        """GPU-seconds a line's tokens need at this capacity."""
        num_prefill = line.num_prompt_tokens - line.num_cached_tokens
        num_prefill_equivalent = (
            num_prefill + line.num_cached_tokens * self.cached_prompt_work
        )
        return (
            num_prefill_equivalent / self.prompt_tokens_per_s
            + line.num_output_tokens / self.output_tokens_per_s
        )

    def scaled(self, factor: float, why: str) -> Capacity:
        """This capacity times `factor` (e.g. a quantized model's speed-up)."""
        return dataclasses.replace(
            self,
            prompt_tokens_per_s=self.prompt_tokens_per_s * factor,
            output_tokens_per_s=self.output_tokens_per_s * factor,
            source=f"{self.source} x {factor:g} ({why})",
        )

    def mix_warning(self, output_share: float) -> str | None:
        """A warning when the bill's output share is far from the measurement's."""
        measured = self.measured_output_share
        if not self.is_blended or not measured or not output_share:
            return None
        ratio = max(measured / output_share, output_share / measured)
        if ratio <= _MIX_WARNING_FACTOR:
            return None
        return (
            f"the capacity was measured with {measured:.0%} output tokens, the bill "
            f"has {output_share:.0%}; decode costs more per token than prefill, so "
            "measure with the bill's lengths or give --prompt-tokens-per-s and "
            "--output-tokens-per-s apart"
        )


def from_file(
    path: Path,
    num_gpus: int | None = None,
    slo_p99_ttft_ms: float | None = None,
    slo_p99_tpot_ms: float | None = None,
) -> Capacity:
    """Capacity per GPU from a vLLM benchmark result or a tokenmill calibration."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BreakEvenError(
            f"{path}: cannot read capacity file ({exc.strerror})"
        ) from None
    runs = _parse_runs(path, text)
    if len(runs) == 1 and "prompt_s_per_token" in runs[0]:
        return _from_calibration(path, num_gpus)
    run, why = _pick_run(str(path), runs, slo_p99_ttft_ms, slo_p99_tpot_ms)
    gpus_hint = "pass --capacity-gpus, or benchmark with --metadata num_gpus=N"
    return _from_run(run, f"vLLM benchmark {path.name}, {why}", num_gpus, gpus_hint)


def from_history(
    run: HistoryRun,
    num_gpus: int | None = None,
    slo_p99_ttft_ms: float | None = None,
    slo_p99_tpot_ms: float | None = None,
) -> Capacity:
    """Capacity per GPU from a `bench run` in the history: its fastest point at
    the SLO, picked as from a sweep file."""
    where = f"{run.path}: run {run.id}"
    points = run.result.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise BreakEvenError(
            f"{where} has no list of points; is it a `tokenmill bench run`?"
        )
    # A point whose every request failed measured nothing, not zero capacity.
    measured = [point for point in points if point.get("completed") != 0]
    if not measured:
        raise BreakEvenError(
            f"{where}: every request of its {len(points)} point(s) failed; rerun "
            "`tokenmill bench run` against a working engine"
        )
    point, why = _pick_run(where, measured, slo_p99_ttft_ms, slo_p99_tpot_ms, "point")
    origin = f"{run.describe()}, point '{point.get('label', '?')}' ({why})"
    return _from_run(point, origin, num_gpus, "pass --capacity-gpus")


def _parse_runs(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        try:
            document = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise BreakEvenError(
                f"{path}: not JSON or JSON Lines ({exc.msg}, line {exc.lineno}); "
                "pass the file `vllm bench serve --save-result` wrote"
            ) from None
    if isinstance(document, dict) and isinstance(document.get("points"), list):
        # `tokenmill bench run` writes a sweep as points with vLLM's key names.
        document = document["points"]
    runs = document if isinstance(document, list) else [document]
    if not runs or not all(isinstance(run, dict) for run in runs):
        raise BreakEvenError(f"{path}: expected a JSON object per benchmark run")
    return runs


def _from_calibration(path: Path, num_gpus: int | None) -> Capacity:
    from server.calibration import CalibrationError, load_calibration

    try:
        calibration = load_calibration(path)
    except CalibrationError as exc:
        raise BreakEvenError(str(exc)) from None
    if not (
        calibration.prompt_s_per_token > 0 and calibration.completion_s_per_token > 0
    ):
        raise BreakEvenError(
            f"{path}: the calibration has a zero cost per token, so no capacity; "
            "rerun `tokenmill bench calibrate`"
        )
    gpus = num_gpus or 1
    return Capacity(
        prompt_tokens_per_s=1 / calibration.prompt_s_per_token / gpus,
        output_tokens_per_s=1 / calibration.completion_s_per_token / gpus,
        cached_prompt_work=calibration.cached_prompt_s_per_token
        / calibration.prompt_s_per_token,
        source=(
            f"calibration {path.name} ({calibration.model} on {calibration.hardware}, "
            f"concurrency {calibration.reference_concurrency}, fit residual "
            f"{calibration.fit_residual_rel_rms:.1%}) over {gpus} GPU(s)"
        ),
        notes=(
            "a calibration's rates are at its reference concurrency, not "
            "necessarily at your latency SLO",
        ),
    )


def _pick_run(
    where: str,
    runs: list[dict[str, Any]],
    slo_p99_ttft_ms: float | None,
    slo_p99_tpot_ms: float | None,
    noun: str = "run",
) -> tuple[dict[str, Any], str]:
    slos = {"p99_ttft_ms": slo_p99_ttft_ms, "p99_tpot_ms": slo_p99_tpot_ms}
    limits = {key: limit for key, limit in slos.items() if limit is not None}
    for index, run in enumerate(runs):
        if not isinstance(run.get("total_token_throughput"), int | float):
            raise BreakEvenError(
                f"{where}: {noun} {index + 1} has no total_token_throughput; pass a "
                "result of `vllm bench serve --save-result`, or give "
                "--capacity-tokens-per-s by hand"
            )
        for key in limits:
            if not isinstance(run.get(key), int | float):
                raise BreakEvenError(
                    f"{where}: {noun} {_name(run, index, noun)} has no {key} to "
                    "check the SLO with; benchmark with --percentile-metrics "
                    "ttft,tpot --metric-percentiles 99 (vLLM), or with streaming "
                    "(`tokenmill bench run` without --no-stream)"
                )
    meeting = [
        run for run in runs if all(run[key] <= limit for key, limit in limits.items())
    ]
    if not meeting:
        # The closest is the one whose worst latency is the smallest share over
        # its limit: what a slightly relaxed SLO would accept first.
        index, closest = min(
            enumerate(runs),
            key=lambda item: max(item[1][key] / limit for key, limit in limits.items()),
        )
        figures = ", ".join(f"{key} {closest[key]:,.0f}" for key in limits)
        raise BreakEvenError(
            f"{where}: no {noun} meets the SLO ({_describe(limits)}); the closest, "
            f"{noun} {_name(closest, index, noun)}, had {figures} at "
            f"{_tokens_per_s_at_slo(closest):,.0f} tokens/s. Relax the SLO or "
            "benchmark at lower concurrency"
        )
    best = max(meeting, key=_tokens_per_s_at_slo)
    plural = f"{noun}s"
    why = (
        f"the fastest of {len(runs)} {plural}" if len(runs) > 1 else f"the only {noun}"
    )
    if limits:
        why += f" meeting {_describe(limits)}"
    return best, why


def _name(run: dict[str, Any], index: int, noun: str) -> str:
    label = run.get("label") if noun == "point" else None
    return f"{index + 1} ({label})" if label else str(index + 1)


def _from_run(
    run: dict[str, Any], origin: str, num_gpus: int | None, gpus_hint: str
) -> Capacity:
    notes = []
    gpus = num_gpus or _run_gpus(run)
    if gpus is None:
        gpus = 1
        notes.append(
            f"the result does not say how many GPUs served it; assumed 1 ({gpus_hint})"
        )
    tokens_per_s = _tokens_per_s_at_slo(run)
    if tokens_per_s < run["total_token_throughput"]:
        notes.append(
            f"only requests meeting the benchmark's goodput SLO count: "
            f"{run['request_goodput']:.2f} of {run['request_throughput']:.2f} req/s"
        )
    failed = run.get("failed")
    if isinstance(failed, int) and failed > 0:
        notes.append(
            f"{failed} requests failed in the measurement; its throughput counts "
            "only the ones that completed"
        )
    num_input, num_output = (
        run.get("total_input_tokens"),
        run.get("total_output_tokens"),
    )
    output_share = None
    if (
        isinstance(num_input, int)
        and isinstance(num_output, int)
        and num_input + num_output
    ):
        output_share = num_output / (num_input + num_output)
    concurrency = run.get("max_concurrency")
    described = (
        f"{origin}: {run['total_token_throughput']:,.0f} "
        f"tokens/s total over {gpus} GPU(s)"
        + (f" at concurrency {concurrency}" if concurrency else "")
        + (f", model {run['model_id']}" if run.get("model_id") else "")
        + (f" ({run['note']})" if run.get("note") else "")
    )
    return Capacity.blended(
        tokens_per_s / gpus,
        described,
        measured_output_share=output_share,
        notes=tuple(notes),
    )


def _tokens_per_s_at_slo(run: dict[str, Any]) -> float:
    total = float(run["total_token_throughput"])
    goodput, throughput = run.get("request_goodput"), run.get("request_throughput")
    if (
        isinstance(goodput, int | float)
        and isinstance(throughput, int | float)
        and throughput
    ):
        return total * min(1.0, goodput / throughput)
    return total


def _run_gpus(run: dict[str, Any]) -> int | None:
    for key in ("num_gpus", "tensor_parallel_size"):
        value = run.get(key)
        try:
            if value is not None and int(value) >= 1:
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


def _describe(limits: dict[str, float]) -> str:
    return ", ".join(f"{key} ≤ {limit:g}" for key, limit in limits.items())
