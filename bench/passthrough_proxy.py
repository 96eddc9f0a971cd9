"""The barest pass-through HTTP proxy: the baseline the gateway's overhead is judged by.

A raw ASGI app under uvicorn (uvloop, httptools) with one pooled aiohttp session
to the upstream, the same stack the gateway runs on, minus everything the gateway
does: no routing, no body parsing, no metering, no logging. Bodies go upstream as
they came; responses, streams included, come back piece by piece as they arrive.
Whatever this costs, any proxy on this stack costs at least as much.

Run: `python -m bench.passthrough_proxy --port 9200 --upstream http://127.0.0.1:9100`
(the request's path is appended to the upstream's origin unchanged).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection, not the message.
_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
    }
)
# aiohttp writes the upstream's host and the body's length itself. A response keeps
# its length, so a whole response goes out unchunked, as it came.
_REQUEST_SKIP_HEADERS = _HOP_HEADERS | {b"host", b"content-length"}
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class PassthroughProxy:
    """An ASGI app that forwards every request to `upstream`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=_TIMEOUT,
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Accept-Encoding"),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._session is not None, "uvicorn runs the lifespan first"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in _REQUEST_SKIP_HEADERS
        ]

        try:
            response = await self._session.request(
                scope["method"], url, data=body, headers=headers
            )
        except (aiohttp.ClientError, OSError) as exc:
            await _send_whole(send, 502, f"upstream unreachable: {exc!r}".encode())
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (name, value)
                        for name, value in response.raw_headers
                        if name.lower() not in _HOP_HEADERS
                    ],
                }
            )
            async for data in response.content.iter_any():
                await send(
                    {"type": "http.response.body", "body": data, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})
        finally:
            # A response cut short by an error must not go back to the pool half
            # read. A client that leaves mid-stream goes unnoticed (uvicorn drops
            # writes to it silently), so its stream is read to the end: the gateway
            # watches for that and aborts, a baseline need not.
            if response.content.at_eof():
                response.release()
            else:
                response.close()


async def _send_whole(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument(
        "--upstream", required=True, help="the upstream's origin, e.g. http://h:p"
    )
    args = parser.parse_args()
    uvicorn.run(
        PassthroughProxy(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        # The upstream's own Date and Server headers pass through instead.
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
