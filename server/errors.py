"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import orjson
from starlette.responses import Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    """An error the gateway answers with instead of a completion."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error")

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self, request_id: str | None = None) -> Response:
        headers = {}
        if request_id:
            headers["x-request-id"] = request_id
        if self.retry_after_s is not None:
            headers["retry-after"] = str(self.retry_after_s)
        return Response(
            self.body(), self.status, headers, media_type="application/json"
        )


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )
