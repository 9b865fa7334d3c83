"""JSON request bodies, decoded strictly: a string where an integer belongs is refused, not coerced.

Litestar converts a body into the handler's `data` type loosely (`"1e2"` would become 100 fen), and
lets a body of invalid UTF-8 escape as a 500. Here the body is decoded once, by msgspec in strict
mode, straight into the handler's type; Litestar's own conversion then passes the result through.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

from backend.platform.errors import AppError


@functools.cache
def _decoder(shape: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(shape, strict=True)


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def decode(shape: Any, content_type: str | None, body: bytes) -> Any:
    """`body` as `shape`; 415 unless it is sent as JSON, 400 naming the field when it does not fit."""
    if not _is_json(content_type):
        raise AppError(
            "send the body as application/json",
            code="UNSUPPORTED_MEDIA_TYPE",
            status_code=415,
            detail={"field": "Content-Type"},
        )
    try:
        return _decoder(shape).decode(body)
    except msgspec.ValidationError as exc:
        raise ValidationException(extra=[{"message": str(exc), "source": "body"}]) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise AppError("the body is not valid JSON (UTF-8)", code="BAD_REQUEST") from exc


class JsonRequest(Request[Any, Any, Any]):
    """The request class of the app: `data` parameters are decoded by `decode`."""

    async def json(self) -> Any:
        data = self.route_handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return await super().json()
        if self._json is Empty:
            body = await self.body()
            self._json = self._connection_state.json = decode(
                data.annotation, self.headers.get("content-type"), body
            )
        return self._json
