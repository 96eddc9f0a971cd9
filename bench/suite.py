"""The schema of a nightly suite file: what `bench nightly SUITE.yaml` runs.

One pydantic model per section; loading turns every validation problem into one
`SuiteError` line that names the file, the benchmark and the field. The options
are those of `bench run`, with its defaults. See `bench/examples/nightly-suite.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.metrics import Slo
from bench.regression import DEFAULT_WATCH, Policy
from bench.runner import Point
from bench.workloads import (
    WORKLOAD_KINDS,
    MtBenchWorkload,
    SharedPrefixWorkload,
    SyntheticWorkload,
    Workload,
)

_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class SuiteError(ValueError):
    """A suite file could not be read or is not valid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    """The endpoint and machine every benchmark of the suite measures."""

    url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None
    endpoint: Literal["chat", "completions"] = "chat"
    stream: bool = True
    # None: the server's first model at /v1/models.
    model: str | None = None
    usd_per_hour: float | None = Field(None, ge=0)
    # Runs on other hardware are never compared, so name the machine.
    hardware: str | None = None
    telemetry: Literal["auto", "nvml", "cpu", "off"] = "auto"

    @field_validator("telemetry", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value


class _WorkloadSpec(_Strict):
    output_len: int = Field(128, ge=1)
    ignore_eos: bool = False
    seed: int = 0


class SyntheticSpec(_WorkloadSpec):
    kind: Literal["synthetic"] = "synthetic"
    input_len: int = Field(256, ge=1)
    range_ratio: float = Field(0.0, ge=0, lt=1)

    def build(self) -> Workload:
        return SyntheticWorkload(
            self.input_len, self.output_len, self.range_ratio, self.seed
        )


class SharedPrefixSpec(_WorkloadSpec):
    kind: Literal["shared-prefix"]
    prefix_len: int = Field(512, ge=1)
    suffix_len: int = Field(32, ge=1)
    num_prefixes: int = Field(1, ge=1)

    def build(self) -> Workload:
        return SharedPrefixWorkload(
            self.prefix_len,
            self.suffix_len,
            self.output_len,
            self.num_prefixes,
            self.seed,
        )


class MtBenchSpec(_WorkloadSpec):
    kind: Literal["mt-bench"]

    def build(self) -> Workload:
        return MtBenchWorkload(self.output_len, self.seed)


def _workload_kind(value: Any) -> str | None:
    # A workload without `kind` is synthetic, as `bench run`'s default.
    if isinstance(value, dict):
        return str(value.get("kind", "synthetic"))
    return getattr(value, "kind", None)


WorkloadSpec = Annotated[
    Annotated[SyntheticSpec, Tag("synthetic")]
    | Annotated[SharedPrefixSpec, Tag("shared-prefix")]
    | Annotated[MtBenchSpec, Tag("mt-bench")],
    Discriminator(_workload_kind),
]


class SloSpec(_Strict):
    ttft_ms: float | None = Field(None, gt=0)
    tpot_ms: float | None = Field(None, gt=0)
    e2el_ms: float | None = Field(None, gt=0)


class Benchmark(_Strict):
    """One `bench run` of the suite, stored and judged under its name."""

    name: str = Field(pattern=_NAME_PATTERN)
    # Overrides of the suite's defaults.
    model: str | None = None
    endpoint: Literal["chat", "completions"] | None = None
    workload: WorkloadSpec = Field(default_factory=SyntheticSpec)
    concurrency: list[int] = []
    request_rate: list[float] = []
    max_concurrency: int | None = Field(None, ge=1)
    num_requests: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    num_warmup: int | None = Field(None, ge=0)
    slo: SloSpec = SloSpec()

    @model_validator(mode="after")
    def _check(self) -> Benchmark:
        if self.num_requests is not None and self.duration_s is not None:
            raise ValueError("give num_requests or duration_s, not both")
        if not self.concurrency and not self.request_rate:
            raise ValueError(
                "give at least one point: concurrency: [1, 4] or request_rate: [2]"
            )
        self.points()  # Point checks each value and says which is wrong.
        return self

    def points(self) -> list[Point]:
        points = [Point("concurrency", c) for c in self.concurrency]
        points += [Point("rate", r, self.max_concurrency) for r in self.request_rate]
        return points

    def run_slo(self) -> Slo:
        return Slo(self.slo.ttft_ms, self.slo.tpot_ms, self.slo.e2el_ms)


class RegressionSpec(_Strict):
    """The noise-aware threshold; see `bench.regression` for the method."""

    history_runs: int = Field(5, ge=1)
    tolerance_pct: float = Field(5.0, ge=0)
    min_history: int = Field(3, ge=1)
    watch: list[str] = list(DEFAULT_WATCH)

    @model_validator(mode="after")
    def _check(self) -> RegressionSpec:
        self.policy()  # Policy checks the combination and names what is wrong.
        return self

    def policy(self) -> Policy:
        return Policy(
            self.history_runs, self.tolerance_pct, self.min_history, tuple(self.watch)
        )


class Suite(_Strict):
    """A nightly suite: where, what, and how strictly to judge it."""

    # Stored with every run; the suite file's name when not given.
    name: str = Field("", pattern=r"^$|" + _NAME_PATTERN)
    defaults: Defaults = Defaults()
    regression: RegressionSpec = RegressionSpec()
    benchmarks: list[Benchmark] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Suite:
        names = [benchmark.name for benchmark in self.benchmarks]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(
                f"benchmark names must be unique; {', '.join(repeated)} repeats"
            )
        return self


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file; raises `SuiteError` with readable lines."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SuiteError(
            f"{path}: cannot read the suite ({exc.strerror}); see "
            "bench/examples/nightly-suite.yaml"
        ) from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from exc
    return parse_suite(raw, path)


def parse_suite(raw: Any, path: Path) -> Suite:
    """Validate parsed YAML; `path` names it in errors and the suite by default."""
    if not isinstance(raw, dict):
        raise SuiteError(
            f"{path}: a suite is a mapping with `benchmarks:` at the top, got "
            f"{type(raw).__name__}"
        )
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(_describe(exc, raw, path)) from None
    if not suite.name:
        suite = suite.model_copy(update={"name": path.stem})
    return suite


# Errors whose input is not worth quoting: absent, or the whole section.
_UNQUOTED_ERRORS = frozenset({"missing", "model_type"})


def _describe(exc: ValidationError, raw: dict[str, Any], path: Path) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = str(path)
        if len(loc) >= 2 and loc[0] == "benchmarks" and isinstance(loc[1], int):
            where += f": benchmark {_benchmark_label(raw, loc[1])}"
            loc = loc[2:]
        # A workload's kind appears in the location; the reader wrote no such key.
        if len(loc) >= 2 and loc[0] == "workload" and loc[1] in WORKLOAD_KINDS:
            del loc[1]
        field = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            lines.append(
                f"{where}: {field}: unknown key; see bench/examples/nightly-suite.yaml"
            )
            continue
        if error["type"] == "union_tag_invalid":
            field += ".kind"
            message = f"choose one of {', '.join(WORKLOAD_KINDS)}"
        elif error["type"] == "union_tag_not_found":
            message = (
                "give a mapping: kind (one of "
                f"{', '.join(WORKLOAD_KINDS)}) and its options"
            )
        elif error["type"] == "string_pattern_mismatch":
            message = (
                "use 1-64 lower-case letters, digits, '.', '_' or '-', starting "
                "with a letter or digit, e.g. decode-c4"
            )
        if error["type"] not in _UNQUOTED_ERRORS and not isinstance(
            error.get("input"), dict | list
        ):
            message += f" (got {error['input']!r})"
        lines.append(f"{where}: {field + ': ' if field else ''}{message}")
    return "\n".join(lines)


def _benchmark_label(raw: dict[str, Any], index: int) -> str:
    try:
        name = raw["benchmarks"][index]["name"]
    except (KeyError, IndexError, TypeError):
        name = None
    return repr(name) if isinstance(name, str) else f"#{index + 1}"
