"""The API side: what a bill's tokens cost at the hosted API's list prices.

Prices come from `prices.yaml` (`server.price_table`), the user's overrides
included. A bill names models the way its provider does ("gpt-4o-mini-2024-07-18",
"claude-sonnet-4-20250514"); `ApiPricer` finds the entry, and `--model-map` says
it by hand where no rule finds one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from server.breakeven.errors import BreakEvenError
from server.breakeven.usage import Bill, UsageLine
from server.price_table import ApiPrice, PriceTable

_TOKENS_PER_MTOK = 1_000_000
# Snapshot suffixes: OpenAI's "-2024-07-18", Anthropic's "-20250514" (or "@2025…").
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|[-@]\d{8})$")
# Anthropic's API ids write versions with a dash ("claude-haiku-4-5"), the price
# table with a dot ("claude-haiku-4.5").
_DASHED_VERSION = re.compile(r"-(\d+)-(\d+)$")


@dataclass
class ModelCost:
    """One bill model's monthly tokens and their cost at its API price."""

    model: str
    price_key: str
    num_prompt_tokens: float = 0.0
    num_cached_tokens: float = 0.0
    num_output_tokens: float = 0.0
    list_cost_usd: float = 0.0


@dataclass
class ApiCost:
    """A bill priced at the API, per month."""

    by_model: list[ModelCost]
    list_monthly_usd: float
    # What the provider billed, where the bill says it for every row.
    billed_monthly_usd: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def monthly_usd(self) -> float:
        """The bill's own cost where it has one, else the list-price cost."""
        if self.billed_monthly_usd is not None:
            return self.billed_monthly_usd
        return self.list_monthly_usd


class ApiPricer:
    """Finds a bill model's price entry and prices usage lines with it."""

    def __init__(
        self,
        table: PriceTable,
        model_map: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> None:
        self.table = table
        self.model_map = dict(model_map or {})
        self.provider = provider
        self.notes: set[str] = set()
        for name, key in self.model_map.items():
            if key not in table:
                raise BreakEvenError(
                    f"--model-map {name}={key}: {key!r} is not in the price table; "
                    f"use a key like 'openai/gpt-4o-mini' ({_close(key, table.apis)})"
                )

    def check(self, models: Iterable[str]) -> None:
        """Fail once, naming every model without a price, before any pricing."""
        unknown = sorted({m for m in models if self._find(m) is None})
        if unknown:
            hints = "; ".join(f"{m!r}: {_close(m, self.table.apis)}" for m in unknown)
            raise BreakEvenError(
                f"no API price for bill model(s) {', '.join(map(repr, unknown))} "
                f"({hints}). Say which entry to use with --model-map "
                f"{unknown[0]}=provider/model, or add the model to "
                "$TOKENMILL_HOME/prices.yaml"
            )

    def price_for(self, model: str) -> ApiPrice:
        key = self._find(model)
        if key is None:
            self.check([model])
        return self.table.get(key or model)

    def line_cost_usd(self, line: UsageLine, price: ApiPrice | None = None) -> float:
        """The line's cost at `price` (by default its own model's)."""
        price = price or self.price_for(line.model)
        cached_rate = _rate(price.cached_input_usd_per_mtok, price.input_usd_per_mtok)
        write_rate = _rate(price.cache_write_usd_per_mtok, price.input_usd_per_mtok)
        write_1h_rate = _rate(price.cache_write_1h_usd_per_mtok, write_rate)
        if price.cached_input_usd_per_mtok is None and line.num_cached_tokens:
            self.notes.add(
                f"{price.key} has no cached-input price: cache reads cost input"
            )
        if price.cache_write_usd_per_mtok is None and line.num_cache_write_tokens:
            self.notes.add(f"{price.key} has no cache-write price: writes cost input")
        cost_usd = (
            line.num_uncached_tokens * price.input_usd_per_mtok
            + line.num_cached_tokens * cached_rate
            + line.num_cache_write_tokens * write_rate
            + line.num_cache_write_1h_tokens * write_1h_rate
            + line.num_output_tokens * price.output_usd_per_mtok
        ) / _TOKENS_PER_MTOK
        if not line.is_batch:
            return cost_usd
        return cost_usd * (1 - self.batch_discount(price))

    def batch_discount(self, price: ApiPrice) -> float:
        if price.batch_discount is None:
            raise BreakEvenError(
                f"API price {price.key!r} has no batch_discount ({price.source}), but "
                "the bill has batch traffic for it; add batch_discount to its entry "
                "in $TOKENMILL_HOME/prices.yaml"
            )
        if not price.batch_discount_verified:
            self.notes.add(
                f"{price.key}: batch discount {price.batch_discount:.0%} is not "
                "verified against the provider's page"
            )
        return price.batch_discount

    def price_bill(self, bill: Bill) -> ApiCost:
        """The bill's monthly cost at list prices, by model."""
        self.check(bill.models)
        by_model: dict[str, ModelCost] = {}
        for line in bill.lines:
            price = self.price_for(line.model)
            cost = by_model.setdefault(line.model, ModelCost(line.model, price.key))
            cost.num_prompt_tokens += bill.monthly(line.num_prompt_tokens)
            cost.num_cached_tokens += bill.monthly(line.num_cached_tokens)
            cost.num_output_tokens += bill.monthly(line.num_output_tokens)
            cost.list_cost_usd += bill.monthly(self.line_cost_usd(line, price))
        billed = [line.billed_cost_usd for line in bill.lines]
        billed_usd = None
        if all(cost is not None for cost in billed):
            billed_usd = bill.monthly(sum(cost or 0.0 for cost in billed))
        models = sorted(by_model.values(), key=lambda c: -c.list_cost_usd)
        list_usd = sum(c.list_cost_usd for c in models)
        notes = sorted(self.notes)
        for cost in models:
            entry = self.table.get(cost.price_key)
            notes.append(
                f"{cost.model} priced as {entry.key} ({entry.source}, as of "
                f"{entry.as_of})"
            )
        return ApiCost(models, list_usd, billed_usd, notes)

    def _find(self, model: str) -> str | None:
        for name in _candidates(model):
            if name in self.model_map:
                return self.model_map[name]
            if name in self.table:
                return name
            providers = sorted({k.split("/", 1)[0] for k in self.table.apis})
            if self.provider in providers:
                providers.insert(0, providers.pop(providers.index(self.provider)))
            for provider in providers:
                if f"{provider}/{name}" in self.table:
                    return f"{provider}/{name}"
        return None


def _candidates(model: str) -> list[str]:
    name = model.strip().lower()
    undated = _SNAPSHOT.sub("", name)
    dotted = undated
    if "claude" in undated:
        dotted = _DASHED_VERSION.sub(r"-\1.\2", undated)
    return list(dict.fromkeys([model, name, undated, dotted]))


def _rate(rate: float | None, fallback: float) -> float:
    return fallback if rate is None else rate


def _close(name: str, known: Iterable[str]) -> str:
    tail = name.lower().rsplit("/", 1)[-1]
    keys = list(known)
    matches = difflib.get_close_matches(tail, [k.split("/", 1)[-1] for k in keys], n=2)
    full = [k for k in keys if k.split("/", 1)[-1] in matches]
    return f"closest: {', '.join(full)}" if full else "no close entry"
