"""The metering routes: usage reports, feedback, and Prometheus metrics."""

from __future__ import annotations

import time
from datetime import datetime

import aiohttp
import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from server.auth import Authenticator
from server.engines import Engines
from server.errors import ApiError
from server.ledger import Ledger
from server.metering import Meter
from server.sampler import Sampler
from server.usage_report import ReportError, build_report, parse_group_by

_OUTCOMES = ("success", "failure")


def parse_time(text: str | None, now_s: float | None = None) -> float | None:
    """Seconds since the epoch from unix seconds, ISO 8601, or an age like `7d`."""
    if not text:
        return None
    now_s = time.time() if now_s is None else now_s
    units_s = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text[-1] in units_s and text[:-1].replace(".", "", 1).isdigit():
        return now_s - float(text[:-1]) * units_s[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"cannot read the time {text!r}; use ISO 8601 (2026-12-01 or "
            "2026-12-01T08:00:00+00:00), unix seconds, or an age such as 7d or 12h"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def add_metering_routes(
    app: FastAPI,
    engines: Engines,
    meter: Meter,
    auth: Authenticator,
    sampler: Sampler | None,
) -> None:
    ledger = meter.ledger

    async def usage(request: Request) -> Response:
        key = await auth.identify(request)
        params = request.query_params
        try:
            group_by = parse_group_by(params.get("group_by", "model"))
            start_s = parse_time(params.get("start"))
            end_s = parse_time(params.get("end"))
        except ReportError as exc:
            raise ApiError(400, str(exc), param="group_by") from None
        # Admins see everyone's usage; every other key sees its own.
        key_name = key.name if key is not None and not key.is_admin else None
        report = await _report(
            _ledger(ledger), engines, meter, group_by, start_s, end_s, key_name
        )
        return Response(orjson.dumps(report), media_type="application/json")

    async def feedback(request: Request) -> Response:
        await auth.identify(request)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("request_id"), str):
            raise ApiError(
                400, "send {\"request_id\": ID, \"outcome\": \"success\"|\"failure\"}",
                param="request_id",
            )  # fmt: skip
        outcome = body.get("outcome")
        if outcome not in _OUTCOMES:
            raise ApiError(
                400, f"outcome must be 'success' or 'failure', not {outcome!r}",
                param="outcome",
            )  # fmt: skip
        if not await _ledger(ledger).set_feedback(body["request_id"], outcome):
            raise ApiError(
                404, f"no request {body['request_id']!r} in the ledger",
                param="request_id", code="request_not_found",
            )  # fmt: skip
        return Response(orjson.dumps({"ok": True}), media_type="application/json")

    async def metrics(request: Request) -> Response:
        await auth.require_admin(request)
        if sampler is not None:
            meter.metrics.observe_devices(sampler.latest())
        if ledger is not None:
            meter.metrics.observe_ledger(ledger.num_commits, ledger.num_rows_written)
        body, content_type = meter.metrics.exposition()
        return Response(body, media_type=content_type)

    async def engine_metrics(request: Request) -> Response:
        await auth.require_admin(request)
        name = request.path_params["model"]
        upstream = engines.resolve(name)
        if upstream is None:
            raise ApiError(
                404, f"model {name!r} does not exist", code="model_not_found"
            )
        url = upstream.base_url.removesuffix("/v1") + "/metrics"
        try:
            async with upstream.session.get(url, headers=upstream.headers) as answer:
                text = await answer.read()
                return Response(text, answer.status, media_type="text/plain")
        except (aiohttp.ClientError, OSError) as exc:
            raise ApiError(
                502, f"the engine of {name!r} did not answer: {exc!r}"
            ) from None

    app.add_route("/v1/usage", usage, methods=["GET"])
    app.add_route("/v1/feedback", feedback, methods=["POST"])
    app.add_route("/metrics", metrics, methods=["GET"])
    app.add_route("/metrics/engines/{model}", engine_metrics, methods=["GET"])


def _ledger(ledger: Ledger | None) -> Ledger:
    if ledger is None:
        raise ApiError(503, "this gateway runs without a ledger", code="no_ledger")
    return ledger


async def _report(
    ledger: Ledger,
    engines: Engines,
    meter: Meter,
    group_by: list[str],
    start_s: float | None,
    end_s: float | None,
    key_name: str | None,
) -> dict:
    rows = await ledger.fetch_requests(start_s, end_s)
    uptime = await ledger.fetch_uptime(start_s or 0.0, end_s or time.time())
    report = build_report(
        rows, uptime, engines.models, meter.pricing, group_by, start_s, end_s,
        key_name=key_name,
    )  # fmt: skip
    return report.to_dict()
