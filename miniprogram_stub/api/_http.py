"""One caller's HTTP to medpay: its headers, the error envelope raised as `ApiError`, answers decoded
into their Structs; and `operation`, which names the document's operation a method calls."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import httpx
import msgspec

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class ApiError(Exception):
    """medpay's refusal: its stable `code` (docs/errors.md), the HTTP `status`, the `message` for
    people and the `detail` (the failing field, a partner's code, ...)."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail


class _Envelope(msgspec.Struct):
    error: _ErrorBody


class _ErrorBody(msgspec.Struct):
    code: str
    message: str = ""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


def operation(operation_id: str) -> Callable[[F], F]:
    """Marks a method as the client of the document's `operation_id` (kept in step by a test)."""

    def mark(method: F) -> F:
        method.__operation_id__ = operation_id  # type: ignore[attr-defined]
        return method

    return mark


def idempotency(key: str | None) -> dict[str, str]:
    """The `Idempotency-Key` of a money-moving POST: the caller's, to retry safely, or a fresh one."""
    return {"Idempotency-Key": key or uuid.uuid4().hex}


Query = Mapping[str, str | int | date | datetime | None]


class Caller:
    """An `httpx.AsyncClient` (its `base_url` medpay's) and the headers of who calls: a patient's
    or a partner's bearer token, or none."""

    def __init__(self, http: httpx.AsyncClient, headers: Mapping[str, str] | None = None) -> None:
        self.http = http
        self.headers = dict(headers or {})

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: msgspec.Struct | None = None,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        """The answer, when 2xx; `ApiError` otherwise."""
        if body is not None:
            extra["content"] = msgspec.json.encode(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        query = {k: v.isoformat() if isinstance(v, date) else v for k, v in (params or {}).items()}
        answer = await self.http.request(
            method,
            path,
            params={k: v for k, v in query.items() if v is not None},
            headers={**self.headers, **(headers or {})},
            **extra,
        )
        if answer.is_error:
            raise refusal(answer)
        return answer

    async def call(self, into: type[T], method: str, path: str, **kwargs: Any) -> T:
        """The answer's body decoded into `into` (strictly: a wrong type is an error, not coerced)."""
        answer = await self.send(method, path, **kwargs)
        return msgspec.json.decode(answer.content, type=into)


def refusal(answer: httpx.Response) -> ApiError:
    """The error envelope of a non-2xx answer; an answer not in it (a proxy's, a channel
    endpoint's own terms) keeps its text as the message, under code `HTTP_<status>`."""
    try:
        error = msgspec.json.decode(answer.content, type=_Envelope).error
    except msgspec.DecodeError:  # ValidationError too
        return ApiError(answer.status_code, f"HTTP_{answer.status_code}", answer.text, {})
    return ApiError(answer.status_code, error.code, error.message, error.detail)
