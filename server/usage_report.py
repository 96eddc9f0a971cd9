"""Usage reports: the ledger's requests grouped and summed, with their costs.

A pure function of ledger rows, uptime and prices, shared by `GET /v1/usage` and
`tokenmill report usage`. Costs that cannot be known stay None; a sum over a group
counts only known costs and says how many were unknown.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from server.absorbed_cost import allocate_absorbed_cost, request_weight
from server.config import ModelsFile
from server.pricing import ModelPricing

GROUP_FIELDS = {"model": "model", "key": "key_name", "tag": "tag", "user": "user",
                "status": "status", "day": None}  # fmt: skip


class ReportError(ValueError):
    """A report was asked for with arguments that cannot work."""


@dataclass
class UsageRow:
    """One group's totals."""

    group: dict[str, str | None]
    num_requests: int = 0
    num_errors: int = 0
    num_aborted: int = 0
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_completion_tokens: int = 0
    cache_savings_usd: float = 0.0
    list_cost_usd: float = 0.0
    num_unpriced: int = 0
    absorbed_cost_usd: float | None = None
    api_equivalent_cost_usd: float | None = None
    num_successful: int = 0
    success_basis: str = "status"
    ttft_s: list[float] = field(default_factory=list, repr=False)
    duration_s: list[float] = field(default_factory=list, repr=False)

    @property
    def cache_hit_rate(self) -> float | None:
        if not self.num_prompt_tokens:
            return None
        return self.num_cached_tokens / self.num_prompt_tokens

    @property
    def error_rate(self) -> float | None:
        return self.num_errors / self.num_requests if self.num_requests else None

    @property
    def cost_usd(self) -> float | None:
        """What the group cost: absorbed where known, else list."""
        if self.absorbed_cost_usd is not None:
            return self.absorbed_cost_usd
        return None if self.num_unpriced == self.num_requests else self.list_cost_usd

    @property
    def savings_usd(self) -> float | None:
        cost = self.cost_usd
        if cost is None or self.api_equivalent_cost_usd is None:
            return None
        return self.api_equivalent_cost_usd - cost

    @property
    def cost_per_successful_request_usd(self) -> float | None:
        cost = self.cost_usd
        if cost is None or not self.num_successful:
            return None
        return cost / self.num_successful

    def to_dict(self) -> dict[str, Any]:
        data = {
            k: v for k, v in asdict(self).items() if k not in ("ttft_s", "duration_s")
        }
        data.update(
            cache_hit_rate=self.cache_hit_rate,
            error_rate=self.error_rate,
            cost_usd=self.cost_usd,
            savings_usd=self.savings_usd,
            cost_per_successful_request_usd=self.cost_per_successful_request_usd,
        )
        for name, values in (("ttft_s", self.ttft_s), ("duration_s", self.duration_s)):
            for q in (50, 90, 99):
                data[f"p{q}_{name}"] = percentile(values, q)
        return data


@dataclass
class ModelBill:
    """One model's hardware bill over the report period."""

    model: str
    bill_usd: float
    idle_usd: float
    utilization: float | None


@dataclass
class UsageReport:
    start_s: float | None
    end_s: float | None
    group_by: list[str]
    rows: list[UsageRow]
    bills: list[ModelBill]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start_s,
            "end": self.end_s,
            "group_by": self.group_by,
            "data": [row.to_dict() for row in self.rows],
            "hardware": [asdict(bill) for bill in self.bills],
        }


def parse_group_by(text: str) -> list[str]:
    fields = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [f for f in fields if f not in GROUP_FIELDS]
    if unknown:
        raise ReportError(
            f"cannot group by {', '.join(map(repr, unknown))}; use a comma-separated "
            f"list of {', '.join(sorted(GROUP_FIELDS))}"
        )
    return fields


def build_report(
    rows: Iterable[Mapping[str, Any]],
    uptime: Iterable[tuple[str, float, float]],
    models: ModelsFile,
    pricing: Mapping[str, ModelPricing],
    group_by: list[str],
    start_s: float | None = None,
    end_s: float | None = None,
    key_name: str | None = None,
) -> UsageReport:
    """Group `rows`; with `key_name`, only that key's rows (absorbed cost is still
    divided over everyone's requests, so one key never absorbs another's share)."""
    rows = list(rows)
    absorbed, bills = _absorbed(rows, list(uptime), models, start_s, end_s)
    groups: dict[tuple, UsageRow] = {}
    for row in rows:
        if key_name is not None and row["key_name"] != key_name:
            continue
        key = tuple(_group_value(row, name) for name in group_by)
        if key not in groups:
            groups[key] = UsageRow(group=dict(zip(group_by, key, strict=True)))
        _add(groups[key], row, absorbed, pricing.get(row["model"]))
    for usage in groups.values():
        if usage.success_basis == "status":
            usage.num_successful = usage.num_requests - usage.num_errors
    ordered = [groups[key] for key in sorted(groups, key=lambda k: [str(v) for v in k])]
    return UsageReport(start_s, end_s, group_by, ordered, bills)


def _group_value(row: Mapping[str, Any], name: str) -> str | None:
    if name == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(row["started_at"]))
    value = row.get(GROUP_FIELDS[name] or name)
    return None if value is None else str(value)


def _add(
    usage: UsageRow,
    row: Mapping[str, Any],
    absorbed: Mapping[str, float],
    pricing: ModelPricing | None,
) -> None:
    usage.num_requests += 1
    usage.num_errors += row["status"] == "error"
    usage.num_aborted += row["status"] == "aborted"
    num_prompt = row["num_prompt_tokens"] or 0
    num_cached = row["num_cached_tokens"] or 0
    usage.num_prompt_tokens += num_prompt
    usage.num_cached_tokens += num_cached
    usage.num_completion_tokens += row["num_completion_tokens"] or 0
    if pricing is not None and (saved := pricing.cache_savings_usd(num_cached)):
        usage.cache_savings_usd += saved
    if row["list_cost_usd"] is None:
        usage.num_unpriced += 1
    else:
        usage.list_cost_usd += row["list_cost_usd"]
    if row["request_id"] in absorbed:
        usage.absorbed_cost_usd = (usage.absorbed_cost_usd or 0.0) + absorbed[
            row["request_id"]
        ]
    if row["api_equivalent_cost_usd"] is not None:
        usage.api_equivalent_cost_usd = (usage.api_equivalent_cost_usd or 0.0) + row[
            "api_equivalent_cost_usd"
        ]
    feedback = row.get("feedback")
    if feedback is not None:
        if usage.success_basis == "status":
            # Once any request in the group has feedback, feedback decides.
            usage.success_basis = "feedback"
            usage.num_successful = 0
        usage.num_successful += feedback == "success"
    if row["ttft_s"] is not None:
        usage.ttft_s.append(row["ttft_s"])
    if row["duration_s"] is not None:
        usage.duration_s.append(row["duration_s"])


def _absorbed(
    rows: list[Mapping[str, Any]],
    uptime: list[tuple[str, float, float]],
    models: ModelsFile,
    start_s: float | None,
    end_s: float | None,
) -> tuple[dict[str, float], list[ModelBill]]:
    per_request: dict[str, float] = {}
    bills = []
    by_model: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for model_name, up_start, up_end in uptime:
        clipped = (max(up_start, start_s or up_start), min(up_end, end_s or up_end))
        if clipped[1] > clipped[0]:
            intervals[model_name].append(clipped)
    for model in models.models:
        usd_per_hour = model.hardware.usd_per_hour if model.hardware else None
        if usd_per_hour is None or not intervals.get(model.name):
            continue
        model_rows = by_model.get(model.name, [])
        # Weights must be of one kind: engine-seconds only when every row has them.
        uses_work = all(row["work_s"] is not None for row in model_rows)
        spans = [
            (
                row["request_id"],
                row["started_at"],
                row["started_at"] + (row["duration_s"] or 0.0),
                request_weight(
                    row["work_s"] if uses_work else None,
                    row["num_prompt_tokens"] or 0,
                    row["num_cached_tokens"] or 0,
                    row["num_completion_tokens"] or 0,
                ),
            )
            for row in model_rows
        ]
        result = allocate_absorbed_cost(spans, intervals[model.name], usd_per_hour)
        per_request.update(result.per_request_usd)
        bills.append(
            ModelBill(model.name, result.bill_usd, result.idle_usd, result.utilization)
        )
    return per_request, bills


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
