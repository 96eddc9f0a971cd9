"""The HTTP gateway: OpenAI-compatible routes in front of the engines.

The completion routes are served straight from ASGI, ahead of FastAPI's router and
middleware stack: they forward bytes, and every microsecond here is paid per
request. Everything else (models, health, metering routes) is a FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import Authenticator
from server.engines import Engines
from server.errors import ApiError
from server.metering import Meter, record_uptime
from server.metering_routes import add_metering_routes
from server.proxy import Proxy
from server.records import RequestSink
from server.sampler import Sampler

logger = logging.getLogger(__name__)


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def create_app(
    engines: Engines,
    sink: RequestSink,
    manage_engines: bool = True,
    auth: Authenticator | None = None,
    meter: Meter | None = None,
    sampler: Sampler | None = None,
) -> ASGIApp:
    """The gateway app; with `manage_engines` its lifespan starts and stops them."""

    auth = auth or Authenticator(None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = []
        if manage_engines:
            engines.start()
        if sampler is not None:
            await sampler.start()
        if meter is not None and meter.ledger is not None:
            background.append(asyncio.create_task(record_uptime(engines, meter.ledger)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            if sampler is not None:
                await sampler.stop()
            if manage_engines:
                await engines.stop()
            if meter is not None and meter.ledger is not None:
                await meter.ledger.close()

    app = FastAPI(title="tokenmill", lifespan=lifespan, docs_url=None, redoc_url=None)
    proxy = Proxy(engines.resolve, sink, auth.identify)
    created = int(time.time())

    async def list_models(request: Request) -> Response:
        await auth.identify(request)
        data = []
        for model in engines.models.models:
            for name in model.served_names:
                data.append(
                    {
                        "id": name,
                        "object": "model",
                        "created": created,
                        "owned_by": "tokenmill",
                        "root": model.name,
                        "precision": model.precision,
                        "max_model_len": model.engine.max_model_len,
                    }
                )
        return _json({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(request: Request) -> Response:
        statuses = engines.statuses()
        is_ready = all(s.state == "ready" for s in statuses)
        return _json(
            {
                "status": "ready" if is_ready else "not_ready",
                "models": {s.name: s.state for s in statuses},
            },
            200 if is_ready else 503,
        )

    app.add_route("/v1/models", list_models, methods=["GET"])
    app.add_route("/health", health, methods=["GET"])
    app.add_route("/ready", ready, methods=["GET"])

    if meter is not None:
        add_metering_routes(app, engines, meter, auth, sampler)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path} here"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not take {request.method}"
        return ApiError(exc.status_code, message).response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError(
            500, f"internal error: {exc.__class__.__name__}", code="internal_error"
        ).response()

    return CompletionRoutes(app, proxy)


class CompletionRoutes:
    """Serves POST /v1/chat/completions and /v1/completions without the router
    and middleware (which cost about as much as the forwarding itself, measured
    with py-spy under load); passes every other request, and lifespan, to `app`."""

    _ENDPOINTS = {
        "/v1/chat/completions": "chat/completions",
        "/v1/completions": "completions",
    }

    def __init__(self, app: ASGIApp, proxy: Proxy) -> None:
        self.app = app
        self._proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._ENDPOINTS.get(scope.get("path", ""))
        if endpoint is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            error = ApiError(405, f"{scope['path']} takes POST, not {scope['method']}")
            await error.response()(scope, receive, send)
            return
        try:
            response = await self._proxy.forward(Request(scope, receive), endpoint)
        except Exception as exc:
            logger.exception("unhandled error on POST %s", scope["path"])
            response = ApiError(
                500, f"internal error: {exc.__class__.__name__}", code="internal_error"
            ).response()
        await response(scope, receive, send)
