"""Who is calling: the API key behind a request, or open mode when no key exists."""

from __future__ import annotations

import ipaddress
import socket

from starlette.requests import Request

from server.errors import ApiError
from server.keys import KeyInfo, KeyStore


class Authenticator:
    """Checks `Authorization: Bearer KEY` against the key store.

    With no active key the gateway is open (every request anonymous); the CLI only
    allows that on a loopback address.
    """

    def __init__(self, keys: KeyStore | None) -> None:
        self._keys = keys

    async def identify(self, request: Request) -> KeyInfo | None:
        """The caller's key; None in open mode; ApiError 401 otherwise."""
        if self._keys is None or not await self._keys.has_keys():
            return None
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "this gateway needs an API key: send 'Authorization: Bearer KEY' "
                "(an admin makes one with `tokenmill keys create NAME`)",
                code="missing_api_key",
            )
        info = await self._keys.authenticate(presented.strip())
        if info is None:
            raise ApiError(
                401, "the API key is invalid or revoked", code="invalid_api_key"
            )
        return info

    async def require_admin(self, request: Request) -> KeyInfo | None:
        """Like `identify`, but a non-admin key gets 403; open mode passes."""
        info = await self.identify(request)
        if info is not None and not info.is_admin:
            raise ApiError(
                403,
                f"key {info.name!r} is not an admin key; this route needs one",
                code="admin_required",
            )
        return info


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only listens on this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
