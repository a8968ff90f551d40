"""API errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

The official openai client maps the status to its typed exceptions (401
AuthenticationError, 404 NotFoundError, 429 RateLimitError, 503 InternalServerError...),
so the status matters as much as the body.
"""

from __future__ import annotations

import json


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type, "param": param, "code": code}}).encode()


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, type="authentication_error", code="invalid_api_key")


def not_found(message: str, code: str = "not_found") -> ApiError:
    return ApiError(404, message, code=code)


def rate_limited(message: str, code: str, retry_after: float) -> ApiError:
    return ApiError(429, message, type="rate_limit_error", code=code, retry_after=retry_after)


def unavailable(message: str, code: str, retry_after: float | None = None) -> ApiError:
    return ApiError(503, message, type="server_error", code=code, retry_after=retry_after)


def upstream_failed(message: str) -> ApiError:
    return ApiError(502, message, type="server_error", code="upstream_error")


def answer_timed_out(limit_s: float) -> ApiError:
    return ApiError(
        504,
        f"the answer took longer than this pool allows ({limit_s:g} s); ask for fewer max_tokens or try again",
        type="server_error",
        code="timeout",
    )
