"""One error envelope for every error: `{"error": {"code", "message", "detail"}}`."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import redis.exceptions
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


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached: raised by the pool for a connection it could not open."""


# How long a client is asked to wait when PostgreSQL or Redis is out of reach.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


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
    # PostgreSQL broke a lock cycle or a serialization conflict: the transaction was rolled back; retry.
    log.warning("transaction aborted by contention", error=type(exc).__name__)
    return envelope(
        503, "TRY_AGAIN", "the request collided with another; send it again", headers={"Retry-After": "1"}
    )


# What asyncpg raises when the server went away under a connection, or will not take one now: the
# server shutting down (57P01) or crashed (57P02), starting up (57P03), out of connections (53300),
# the connection lost (class 08). A connection that could not be opened at all is raised as
# DatabaseUnavailable by the pool (`database._connect`).
CONNECTION_LOST: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# Of class 08, a protocol violation (08P01) is what we sent, not the server being gone: a 500.
NOT_CONNECTION_LOST: tuple[type[Exception], ...] = (asyncpg.ProtocolViolationError,)
# asyncpg's InterfaceError is mostly a misuse (wrong argument count, a busy connection): only these
# messages say the connection itself is gone.
_CLOSED = ("connection is closed", "the underlying connection is closed", "pool is closing")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL is out of reach (not that a statement was wrong): a connection
    error, or an asyncpg interface error raised while handling one (Piccolo keeps a transaction
    whose rollback failed as the task's current one: the request's next statement is refused)."""
    if isinstance(exc, NOT_CONNECTION_LOST):
        return False
    if isinstance(exc, (DatabaseUnavailable, *CONNECTION_LOST)):
        return True
    if not isinstance(exc, asyncpg.InterfaceError):
        return False
    if any(text in str(exc) for text in _CLOSED):
        return True
    before = exc.__cause__ or exc.__context__
    return before is not None and database_unavailable(before)


def connection_lost_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The request may have written part of its work: a COMMIT whose answer was lost may have
    # committed, and a request of several transactions keeps those that ended before. Sending it
    # again is safe because the domains record their work under the request's key and resume it
    # (a bill or refund found again, a payment continuing its channel order), not because
    # PostgreSQL rolled anything back.
    if not database_unavailable(exc):
        return internal_error_handler(request, exc)
    log.warning("database unavailable", error=repr(exc))
    return envelope(
        503,
        "DATABASE_UNAVAILABLE",
        "the database is unavailable; send the same request again shortly",
        {"dependency": "postgres"},
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


# What redis-py raises when Redis is out of reach or cannot take writes now: no connection or no
# answer, loading its data, a replica left read-only by a failover (READONLY). Refused credentials or
# commands (AUTH, NOPERM) are connection errors to redis-py but a misconfiguration to us: a 500,
# logged, which no retry fixes.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)
REDIS_MISCONFIGURED: tuple[type[Exception], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
)


def redis_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says Redis is out of reach for now (not that it refuses our credentials)."""
    return isinstance(exc, REDIS_UNAVAILABLE) and not isinstance(exc, REDIS_MISCONFIGURED)


def redis_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # Most requests only send through Redis what the outbox keeps (and never fail for it); the few
    # that count in Redis (bind attempts, proxy checks) cannot go on without it.
    if not redis_unavailable(exc):
        return internal_error_handler(request, exc)
    log.warning("redis unavailable", error=repr(exc))
    return envelope(
        503,
        "SERVICE_UNAVAILABLE",
        "a service this request needs is unavailable; send the same request again shortly",
        {"dependency": "redis"},
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    asyncpg.DeadlockDetectedError: contention_handler,
    asyncpg.SerializationError: contention_handler,
    **dict.fromkeys((DatabaseUnavailable, *CONNECTION_LOST, asyncpg.InterfaceError), connection_lost_handler),
    **dict.fromkeys(REDIS_UNAVAILABLE, redis_unavailable_handler),
    AppError: app_error_handler,
    HTTPException: http_error_handler,
    RecursionError: too_deep_handler,
    Exception: internal_error_handler,
}
