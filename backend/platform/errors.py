"""One error envelope for every error: `{"error": {"code", "message", "detail"}}`."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = structlog.get_logger(__name__)


class AppError(Exception):
    """An error a client can act on: a stable code, an HTTP status, a message, details."""

    status_code = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.detail = detail or {}
        self.headers = headers or {}


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"


class PartnerUnavailable(AppError):
    """A partner platform failed in a way a later retry may fix."""

    status_code = 503
    code = "PARTNER_UNAVAILABLE"


# Litestar's own HTTP errors, by status, under our stable codes.
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def envelope(
    status: int,
    code: str,
    message: str,
    detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body = {"error": {"code": code, "message": message, "detail": detail or {}}}
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def app_error_handler(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    return envelope(exc.status_code, exc.code, exc.message, exc.detail, exc.headers)


# msgspec names the field in its message: "Expected `int`, got `str` - at `$.items[0].quantity`",
# "Object missing required field `code` - at `$.items[0]`", "Object contains unknown field `x`".
_PATH_IN_MESSAGE = re.compile(r"at `\$\.?([^`]*)`")
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def _field_of(message: str) -> str | None:
    path, field = _PATH_IN_MESSAGE.search(message), _FIELD_IN_MESSAGE.search(message)
    return ".".join(part for part in (path and path.group(1), field and field.group(1)) if part) or None


def _validation_detail(exc: ValidationException) -> dict[str, Any]:
    """Name the failing fields: Litestar lists them in `extra`, msgspec in its message."""
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", ""))
        # Litestar names the parameter; for a body that is "data", so the message says more.
        field = _field_of(message) or item.get("key")
        errors.append({"field": field, "source": item.get("source"), "message": message})
    detail: dict[str, Any] = {"errors": errors}
    named = [e["field"] for e in errors if e["field"]]
    if named:
        detail["field"] = named[0]
    return detail


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        detail = _validation_detail(exc)
        field = detail.get("field")
        message = f"invalid value for '{field}'" if field else "the request is malformed"
        return envelope(400, "VALIDATION_ERROR", message, detail)
    status = exc.status_code
    if status == HTTP_500_INTERNAL_SERVER_ERROR:
        return internal_error_handler(_, exc)
    code = HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "SERVICE_UNAVAILABLE")
    return envelope(status, code, exc.detail, headers=exc.headers)


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", exc_info=exc)
    return envelope(HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "something went wrong on our side")


def too_deep_handler(_: Request[Any, Any, Any], exc: RecursionError) -> Response[dict[str, Any]]:
    # msgspec refuses bodies nested past its recursion limit by raising RecursionError.
    return envelope(400, "BAD_REQUEST", "the request body is nested too deeply")


def contention_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # PostgreSQL broke a lock cycle or a serialization conflict: nothing was written; retry.
    log.warning("transaction aborted by contention", error=type(exc).__name__)
    return envelope(
        503, "TRY_AGAIN", "the request collided with another; send it again", headers={"Retry-After": "1"}
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    asyncpg.DeadlockDetectedError: contention_handler,
    asyncpg.SerializationError: contention_handler,
    AppError: app_error_handler,
    HTTPException: http_error_handler,
    RecursionError: too_deep_handler,
    Exception: internal_error_handler,
}
