"""The compression step, run in the toolchain environment: `python -m quantize.compress
PLAN.json`. Loads the checkpoint, calibrates, saves a compressed-tensors checkpoint
(which vLLM loads natively) and writes what it measured to the plan's result path.

llm-compressor draws its own progress bars (calibration batches, then each layer);
this module only says which step is running.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from quantize.calibration import DEFAULT_CALIB_PATH, load_samples
from quantize.methods import METHODS
from quantize.plan import Plan


def compress(plan: Plan) -> dict[str, Any]:
    """Quantize `plan.source_dir` into `plan.output_dir`; returns the measurements."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started_s = time.monotonic()
    method = METHODS[plan.method]
    recipe = importlib.import_module(f"quantize.methods.{plan.method}").build_recipe(
        plan
    )

    _say(f"loading {plan.source_dir}")
    tokenizer = AutoTokenizer.from_pretrained(plan.source_dir)
    model = AutoModelForCausalLM.from_pretrained(plan.source_dir, dtype="auto")

    dataset, num_calib_tokens = None, 0
    calib_path = Path(plan.calib_path or DEFAULT_CALIB_PATH)
    if method.needs_calibration:
        samples = load_samples(
            calib_path, tokenizer, plan.num_calib_samples, plan.calib_seq_len
        )
        num_calib_tokens = sum(map(len, samples))
        dataset = _as_dataset(samples)
        _say(f"calibrating on {len(samples)} samples ({num_calib_tokens} tokens)")

    from llmcompressor import oneshot

    _skip_pinning_without_accelerator()
    oneshot(
        model=model,
        dataset=dataset,
        recipe=recipe,
        num_calibration_samples=len(dataset) if dataset is not None else 0,
        max_seq_length=plan.calib_seq_len,
    )

    _say(f"saving {plan.output_dir}")
    model.save_pretrained(plan.output_dir, save_compressed=True)
    tokenizer.save_pretrained(plan.output_dir)
    return {
        "wall_s": round(time.monotonic() - started_s, 1),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "calibration": {
            "path": str(calib_path) if method.needs_calibration else None,
            "num_samples": len(dataset) if dataset is not None else 0,
            "num_tokens": num_calib_tokens,
            "seq_len": plan.calib_seq_len if method.needs_calibration else None,
        },
        "num_threads": torch.get_num_threads(),
        "versions": {
            name: metadata.version(name)
            for name in ("llmcompressor", "compressed-tensors", "transformers", "torch")
        },
    }


def _skip_pinning_without_accelerator() -> None:
    """Let AWQ run on a machine without an accelerator.

    llm-compressor 0.14's AWQ pins its cached activations in page-locked memory to
    speed up copies to a GPU; without one, torch refuses ("Cannot access
    accelerator device when none is available") and there is nothing to speed up.
    """
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        return
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None


def _as_dataset(samples: list[list[int]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": samples, "attention_mask": [[1] * len(s) for s in samples]}
    )


def _say(line: str) -> None:
    print(f"quantize: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m quantize.compress PLAN.json", file=sys.stderr)
        return 2
    plan = Plan.read(Path(args[0]))
    result = compress(plan)
    Path(plan.result_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
