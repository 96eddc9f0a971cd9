"""An upstream: the OpenAI-compatible server that really runs one model.

Local engines listen on a Unix socket that only this process knows; remote ones on a
URL. Either way the gateway sees the same thing: a pooled session, a base URL ending
in `/v1`, the headers to send, and whether the upstream can take requests now.
"""

from __future__ import annotations

import logging
import os

import aiohttp

from server.config import ModelConfig

logger = logging.getLogger(__name__)

# Streams can stay open for minutes; only connecting gets a short limit.
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class Upstream:
    """Connection details and readiness of one model's engine."""

    def __init__(
        self,
        model: ModelConfig,
        base_url: str,
        api_key: str | None,
        socket_path: str | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.socket_path = socket_path
        self.served_model = (
            model.endpoint.model if model.endpoint and model.endpoint.model else None
        )
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.is_ready = False
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_remote(cls, model: ModelConfig) -> Upstream:
        assert model.endpoint is not None  # callers pick remote models only
        api_key = None
        if model.endpoint.api_key_env:
            api_key = os.environ.get(model.endpoint.api_key_env)
            if not api_key:
                logger.warning(
                    "model %s: environment variable %s is empty; calling %s "
                    "without an API key",
                    model.name,
                    model.endpoint.api_key_env,
                    model.endpoint.url,
                )
        return cls(model, model.endpoint.url, api_key)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session; created lazily inside the running event loop."""
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.socket_path:
                connector = aiohttp.UnixConnector(path=self.socket_path, limit=0)
            else:
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=_TIMEOUT,
                auto_decompress=False,
                # SSE events arrive as lines; one with many logprobs can be long.
                read_bufsize=2**20,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def url(self, path: str) -> str:
        """`path` below the upstream's `/v1`, e.g. `chat/completions`."""
        return f"{self.base_url}/{path}"

    async def is_healthy(self, timeout_s: float = 5.0) -> bool:
        """One probe: vLLM's `/health`, or `/models` for servers without it."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        probe = (
            self.base_url.removesuffix("/v1") + "/health"
            if self.socket_path
            else self.url("models")
        )
        try:
            async with self.session.get(
                probe, headers=self.headers, timeout=timeout
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
