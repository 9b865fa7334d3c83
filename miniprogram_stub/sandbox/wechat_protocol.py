"""What every WeChat server API shares: error answers, fault handling, the access_token lifecycle."""

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Response

from miniprogram_stub.sandbox.faults import FaultBook, answered, delay_or_http_failure, garbled

NAME = "wechat"

ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit mustslower retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
}
# The platform keeps this many tokens per app in the sandbox; older ones read as unknown (40001).
_MAX_TOKENS = 1_000


def error(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    # The real platform appends a request id; clients must key on errcode, never errmsg.
    rid = "-".join(secrets.token_hex(4) for _ in range(3))
    text = errmsg or ERRMSG.get(errcode, "sandbox error")
    return {"errcode": errcode, "errmsg": f"{text}, rid: {rid}"}


async def answer(
    book: FaultBook, api: str, params: dict[str, str], run: Callable[[], dict[str, Any]]
) -> Response[Any]:
    """One server API call: a queued fault first (a delay alone lets the call go on, a garbled body
    is answered once it has), then `run`."""
    fault = book.take(NAME, api)
    plain = await delay_or_http_failure(fault)
    if plain is not None:
        book.record(NAME, api, params, f"http:{plain.status_code}", True)
        return plain
    # A faulted call fails before anything is looked at: no code, grant or token is spent.
    body = error(fault.errcode) if fault is not None and fault.errcode is not None else run()
    errcode = body.get("errcode", 0)
    outcome = "ok" if errcode == 0 else str(errcode)
    book.record(NAME, api, params, answered(fault, outcome), fault is not None)
    content = msgspec.json.encode(body)
    return garbled(fault, Response(content, media_type="application/json"), content)


@dataclass
class _Token:
    expires_at: float
    retired_at: float = math.inf  # a newer token was issued: this one stops working then


class AccessTokens:
    """`cgi-bin/token` credentials: each lives `ttl_s`; a newer one retires the rest after `overlap_s`."""

    def __init__(self, ttl_s: float, overlap_s: float) -> None:
        self.ttl_s, self._overlap_s = ttl_s, overlap_s
        self._tokens: dict[str, _Token] = {}

    def issue(self) -> str:
        now = time.monotonic()
        for token in self._tokens.values():
            token.retired_at = min(token.retired_at, now + self._overlap_s)
        value = secrets.token_urlsafe(96)
        self._tokens[value] = _Token(now + self.ttl_s)
        while len(self._tokens) > _MAX_TOKENS:
            del self._tokens[next(iter(self._tokens))]
        return value

    def errcode(self, value: str) -> int:
        """0 if `value` is accepted now; 40001 absent, unknown or retired; 42001 expired."""
        token = self._tokens.get(value)
        now = time.monotonic()
        if token is None or now >= token.retired_at:
            return 40001
        if now >= token.expires_at:
            return 42001
        return 0
