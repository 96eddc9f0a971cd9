"""Prometheus metrics for the gateway: tokens, dollars, latency and device gauges.

Names follow Prometheus conventions (base units, `_total` counters). Labels are the
model, the API key's *name* (never the key), the tag and the status. Tags come from
clients, so their number is the operator's to keep small; requests without one are
labelled "none".
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from server.records import RequestRecord
from server.telemetry import DeviceSample

_LABELS = ("model", "key", "tag", "status")
# TTFT on a GPU is tens of milliseconds; on a CPU or under load, seconds.
_LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip


class GatewayMetrics:
    """The gateway's collectors, in a registry of their own (tests make several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, ...], _Children] = {}
        r = self.registry
        self.requests = Counter(
            "tokenmill_requests", "Completion requests", _LABELS, registry=r
        )
        self.prompt_tokens = Counter(
            "tokenmill_prompt_tokens", "Prompt tokens, cached included", _LABELS,
            registry=r,
        )  # fmt: skip
        self.cached_tokens = Counter(
            "tokenmill_cached_tokens", "Prompt tokens served from the prefix cache",
            _LABELS, registry=r,
        )  # fmt: skip
        self.completion_tokens = Counter(
            "tokenmill_completion_tokens", "Generated tokens", _LABELS, registry=r
        )
        self.cost_usd = Counter(
            "tokenmill_cost_usd", "List cost of requests in US dollars", _LABELS,
            registry=r,
        )  # fmt: skip
        self.api_equivalent_cost_usd = Counter(
            "tokenmill_api_equivalent_cost_usd",
            "What the same tokens would cost at the reference API, in US dollars",
            _LABELS, registry=r,
        )  # fmt: skip
        self.ttft_s = Histogram(
            "tokenmill_time_to_first_token_seconds", "Time to first token (streams)",
            ("model",), buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.duration_s = Histogram(
            "tokenmill_request_duration_seconds", "Request duration at the gateway",
            ("model", "status"), buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        # Rows per commit shows how well group commit batches under load.
        self.ledger_commits = Gauge(
            "tokenmill_ledger_commits", "Ledger transactions since start", registry=r
        )
        self.ledger_rows = Gauge(
            "tokenmill_ledger_rows", "Request rows written since start", registry=r
        )
        device_labels = ("device", "index", "name")
        self.utilization = Gauge(
            "tokenmill_device_utilization_ratio", "GPU or CPU busy share (0-1)",
            device_labels, registry=r,
        )  # fmt: skip
        self.memory_used = Gauge(
            "tokenmill_device_memory_used_bytes", "Device memory in use",
            device_labels, registry=r,
        )  # fmt: skip
        self.memory_total = Gauge(
            "tokenmill_device_memory_total_bytes", "Device memory in all",
            device_labels, registry=r,
        )  # fmt: skip
        self.power = Gauge(
            "tokenmill_device_power_watts", "Device power draw", device_labels,
            registry=r,
        )  # fmt: skip
        self.temperature = Gauge(
            "tokenmill_device_temperature_celsius", "Device temperature",
            device_labels, registry=r,
        )  # fmt: skip

    def observe(self, record: RequestRecord) -> None:
        labels = (record.model, record.key_name or "none", record.tag or "none",
                  record.status)  # fmt: skip
        children = self._children.get(labels)
        if children is None:
            # labels() takes a lock and hashes every call: resolve once per label set.
            children = self._children[labels] = _Children(
                self.requests.labels(*labels),
                self.prompt_tokens.labels(*labels),
                self.cached_tokens.labels(*labels),
                self.completion_tokens.labels(*labels),
                self.cost_usd.labels(*labels),
                self.api_equivalent_cost_usd.labels(*labels),
                self.ttft_s.labels(record.model),
                self.duration_s.labels(record.model, record.status),
            )
        children.requests.inc()
        children.prompt_tokens.inc(record.num_prompt_tokens or 0)
        children.cached_tokens.inc(record.num_cached_tokens or 0)
        children.completion_tokens.inc(record.num_completion_tokens or 0)
        if record.list_cost_usd is not None:
            children.cost_usd.inc(record.list_cost_usd)
        if record.api_equivalent_cost_usd is not None:
            children.api_equivalent_cost_usd.inc(record.api_equivalent_cost_usd)
        if record.ttft_s is not None:
            children.ttft_s.observe(record.ttft_s)
        if record.duration_s is not None:
            children.duration_s.observe(record.duration_s)

    def observe_ledger(self, num_commits: int, num_rows: int) -> None:
        self.ledger_commits.set(num_commits)
        self.ledger_rows.set(num_rows)

    def observe_devices(self, samples: list[DeviceSample]) -> None:
        for sample in samples:
            labels = (sample.device, str(sample.index), sample.name)
            for gauge, value in (
                (self.utilization, _ratio(sample.utilization_pct)),
                (self.memory_used, sample.memory_used_bytes),
                (self.memory_total, sample.memory_total_bytes),
                (self.power, sample.power_w),
                (self.temperature, sample.temperature_c),
            ):
                if value is not None:
                    gauge.labels(*labels).set(value)

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Children(NamedTuple):
    requests: Counter
    prompt_tokens: Counter
    cached_tokens: Counter
    completion_tokens: Counter
    cost_usd: Counter
    api_equivalent_cost_usd: Counter
    ttft_s: Histogram
    duration_s: Histogram


def _ratio(percent: float | None) -> float | None:
    return None if percent is None else percent / 100
