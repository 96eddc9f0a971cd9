"""A mock OpenAI-compatible server that answers instantly or at a set token pace.

It speaks like vLLM does: usage in whole responses, `stream_options.include_usage`
(a trailing usage-only chunk) and `continuous_usage_stats` (usage in every chunk),
`prompt_tokens_details.cached_tokens`, and the `/health` route. Benchmarks use it
to measure the gateway's own cost; tests use it to check the gateway's logic
without a model. Token counts are synthetic: one "token" per whitespace word of the
prompt, `max_tokens` (default `default_tokens`) tokens out.

Run: `python -m bench.mock_server --port 9100 [--token-delay-ms 0] [--uds PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class MockStats:
    """What the mock saw; tests read it to check what reached the upstream."""

    num_requests: int = 0
    num_aborted: int = 0
    last_body: dict[str, Any] = field(default_factory=dict)
    last_headers: Mapping[str, str] = field(default_factory=dict)
    # The models asked for, in order, consecutive repeats collapsed (bounded by
    # how often the model changes, not by the number of requests).
    model_order: list[str] = field(default_factory=list)


class MockServer:
    """The mock's handlers and settings; `app()` builds the aiohttp application."""

    def __init__(
        self,
        token_delay_s: float = 0.0,
        default_tokens: int = 16,
        cached_tokens: int = 0,
        api_key: str | None = None,
        token_delay_s_by_model: Mapping[str, float] | None = None,
    ) -> None:
        self.token_delay_s = token_delay_s
        # Overrides token_delay_s for the models it names: models of one speed.
        self.token_delay_s_by_model = dict(token_delay_s_by_model or {})
        self.default_tokens = default_tokens
        self.cached_tokens = cached_tokens
        self.api_key = api_key
        self.stats = MockStats()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _models(self, request: web.Request) -> web.Response:
        if (denied := self._check_key(request)) is not None:
            return denied
        body = {"object": "list", "data": [{"id": "mock", "object": "model"}]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, is_chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, is_chat=False)

    def _check_key(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            body = {"error": {"message": "bad key", "type": "auth", "code": 401}}
            return web.Response(
                status=401, body=orjson.dumps(body), content_type="application/json"
            )
        return None

    async def _complete(
        self, request: web.Request, is_chat: bool
    ) -> web.StreamResponse:
        if (denied := self._check_key(request)) is not None:
            return denied
        body = orjson.loads(await request.read())
        self.stats.num_requests += 1
        self.stats.last_body = body
        self.stats.last_headers = request.headers.copy()
        model = str(body.get("model"))
        if not self.stats.model_order or self.stats.model_order[-1] != model:
            self.stats.model_order.append(model)
        if body.get("model") == "fail":
            error = {
                "error": {
                    "message": "mock failure",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            }
            return web.Response(
                status=400, body=orjson.dumps(error), content_type="application/json"
            )
        prompt = _prompt_text(body, is_chat)
        num_prompt = max(1, len(prompt.split()))
        num_out = int(body.get("max_tokens") or self.default_tokens)
        if body.get("stream"):
            return await self._stream(request, body, is_chat, num_prompt, num_out)
        await asyncio.sleep(self._token_delay_s(body) * num_out)
        text = " ".join(f"w{i}" for i in range(num_out))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if is_chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        response = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "chat.completion" if is_chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [choice],
            "usage": self._usage(num_prompt, num_out, final=True),
        }
        return web.Response(
            body=orjson.dumps(response), content_type="application/json"
        )

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        is_chat: bool,
        num_prompt: int,
        num_out: int,
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if is_chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        token_delay_s = self._token_delay_s(body)
        try:
            if is_chat:
                first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
                await self._send(response, base, first, continuous, num_prompt, 0)
            for i in range(num_out):
                if token_delay_s:
                    await asyncio.sleep(token_delay_s)
                if i == 2 and body.get("model") == "die-mid-stream":
                    # Stands in for an engine that crashes while streaming.
                    assert request.transport is not None
                    request.transport.close()
                    return response
                finish = "length" if i == num_out - 1 else None
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
                if is_chat:
                    choice["delta"] = {"content": f" w{i}"}
                else:
                    choice["text"] = f" w{i}"
                await self._send(response, base, choice, continuous, num_prompt, i + 1)
            if include_usage:
                usage = self._usage(num_prompt, num_out, final=True)
                chunk: dict[str, Any] = {**base, "choices": [], "usage": usage}
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.stats.num_aborted += 1
            raise
        return response

    def _token_delay_s(self, body: dict[str, Any]) -> float:
        return self.token_delay_s_by_model.get(
            str(body.get("model")), self.token_delay_s
        )

    async def _send(
        self,
        response: web.StreamResponse,
        base: dict[str, Any],
        choice: dict[str, Any],
        continuous: bool,
        num_prompt: int,
        num_out: int,
    ) -> None:
        chunk = {**base, "choices": [choice]}
        if continuous:
            chunk["usage"] = self._usage(num_prompt, num_out, final=False)
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    def _usage(self, num_prompt: int, num_out: int, final: bool) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": num_prompt,
            "completion_tokens": num_out,
            "total_tokens": num_prompt + num_out,
        }
        if final:
            cached = min(self.cached_tokens, num_prompt)
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage


def _prompt_text(body: dict[str, Any], is_chat: bool) -> str:
    if not is_chat:
        prompt = body.get("prompt", "")
        return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else "")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--uds", help="listen on this Unix socket instead")
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=16, help="default max_tokens")
    # Like vLLM, take the key from VLLM_API_KEY, so the mock can stand in for an
    # engine under tokenmill's supervisor.
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"))
    args = parser.parse_args()
    server = MockServer(args.token_delay_ms / 1000, args.tokens, api_key=args.api_key)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        server.app(),
        host=None if args.uds else args.host,
        port=None if args.uds else args.port,
        path=args.uds,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
