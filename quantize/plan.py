"""What the compression step is asked to do: plain JSON between the two environments.

The CLI (serving environment) writes a plan; `quantize.compress` (toolchain
environment) reads it, so this module must import nothing beyond the standard library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """One compression run."""

    method: str
    bits: int
    source_dir: str
    output_dir: str
    result_path: str
    group_size: int | None = None
    symmetric: bool = True
    calib_path: str | None = None
    num_calib_samples: int = 0
    calib_seq_len: int = 512
    # Modules left at the checkpoint's precision, each with the reason.
    ignore: dict[str, str] = field(default_factory=dict)
    smoothing_strength: float = 0.8
    dampening_frac: float = 0.01
    # How 4-bit group scales are chosen: "minmax" (the full range) or "mse"
    # (the clipped range with the least weight error).
    weight_observer: str = "minmax"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))
