"""Structured logs: every line, ours or a library's, carries the correlation id in force."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

CORRELATION_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
# Values that never belong in a log line, whoever passes them: a key of these is logged redacted.
SECRET_KEYS = frozenset(
    {
        "access_token",
        "apiv3_key",
        "auth_code",
        "authorization",
        "client_secret",
        "id_number",
        "js_code",
        "password",
        "private_key",
        "refresh_token",
        "secret",
        "session_key",
    }
)
REDACTED = "[redacted]"


def redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the value of a key in SECRET_KEYS is replaced, never rendered."""
    for key in SECRET_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Every line through structlog's renderer. Exceptions are plain tracebacks, never a frame's
    local variables (rich's default shows them, and a job's `ctx` holds the settings' keys)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info],  # a library's too
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # arq's command line gives its logger a handler of its own; one line per event is enough.
    logging.getLogger("arq").handlers.clear()
    logging.getLogger("httpx").setLevel(logging.WARNING)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(value) if value else None


@contextmanager
def correlated(correlation_id: str | None, **extra: Any) -> Iterator[str]:
    """Bind a correlation id (a new one if none) to every log line within."""
    cid = correlation_id or new_correlation_id()
    with structlog.contextvars.bound_contextvars(correlation_id=cid, **extra):
        yield cid


def request_correlation_id(scope: Scope) -> str:
    """The request's correlation id: the caller's `X-Request-ID` if it is a sane one, else a new
    one; kept in the scope, so everything that answers this request names the same id."""
    state: dict[str, Any] = scope.setdefault("state", {})
    if (cid := state.get("correlation_id")) is None:
        given = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == CORRELATION_HEADER.encode()),
            "",
        )
        cid = state["correlation_id"] = given if _VALID_ID.match(given) else new_correlation_id()
    return str(cid)


class CorrelationMiddleware:
    """Logs everything a request does under its correlation id (`echo_correlation_id` answers it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        with correlated(request_correlation_id(scope)):
            await self.app(scope, receive, send)


async def echo_correlation_id(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so every answer names its id: the router's own 404s and 405s, and the
    401s that authentication raises before any route's middleware ends, included."""
    if message["type"] == "http.response.start" and scope["type"] == ScopeType.HTTP:
        MutableScopeHeaders.from_message(message)[CORRELATION_HEADER] = request_correlation_id(scope)
