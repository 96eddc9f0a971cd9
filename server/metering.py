"""Metering: price each request, count it, and commit it to the ledger.

`Meter` is the gateway's request sink. Pricing happens before the ledger commit so
that the row, the Prometheus counters and the cost the client sees agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from server.config import ModelsFile
from server.engines import Engines
from server.ledger import Ledger
from server.metrics import GatewayMetrics
from server.price_table import ApiPrice, PriceTable
from server.pricing import ModelPricing, api_equivalent_cost_usd
from server.records import RequestRecord, RequestSink

logger = logging.getLogger(__name__)

UPTIME_HEARTBEAT_S = 30.0


class Meter:
    """Prices, counts and records every request (a `RequestSink`)."""

    def __init__(
        self,
        models: ModelsFile,
        home: Path,
        price_table: PriceTable,
        metrics: GatewayMetrics,
        ledger: Ledger | None,
        also: RequestSink | None = None,
    ) -> None:
        self.pricing = {m.name: ModelPricing.from_home(m, home) for m in models.models}
        self._api_prices: dict[str, ApiPrice] = {
            m.name: price_table.get(m.api_reference)
            for m in models.models
            if m.api_reference
        }
        self.metrics = metrics
        self.ledger = ledger
        self._also = also
        for name, pricing in self.pricing.items():
            if not pricing.is_known:
                logger.warning("model %s: list cost unknown: %s", name, pricing.reason)

    async def submit(self, record: RequestRecord) -> None:
        self.price(record)
        self.metrics.observe(record)
        if self._also is not None:
            await self._also.submit(record)
        if self.ledger is not None:
            await self.ledger.submit(record)

    def price(self, record: RequestRecord) -> None:
        num_prompt = record.num_prompt_tokens or 0
        num_cached = min(record.num_cached_tokens or 0, num_prompt)
        num_completion = record.num_completion_tokens or 0
        pricing = self.pricing.get(record.model)
        if pricing is not None:
            record.list_cost_usd = pricing.list_cost_usd(
                num_prompt, num_cached, num_completion
            )
            record.work_s = pricing.work_s(num_prompt, num_cached, num_completion)
        api_price = self._api_prices.get(record.model)
        if api_price is not None:
            record.api_equivalent_cost_usd = api_equivalent_cost_usd(
                api_price, num_prompt, num_cached, num_completion
            )


async def record_uptime(
    engines: Engines, ledger: Ledger, interval_s: float = UPTIME_HEARTBEAT_S
) -> None:
    """Heartbeat each ready engine's uptime into the ledger until cancelled.

    Absorbed cost divides the hardware bill over the time engines were up; a
    killed gateway loses at most one interval of it.
    """
    while True:
        now = time.time()
        for status in engines.statuses():
            if status.ready_since is not None:
                try:
                    await ledger.record_uptime(status.name, status.ready_since, now)
                except Exception:
                    logger.exception("could not record uptime of %s", status.name)
        await asyncio.sleep(interval_s)
