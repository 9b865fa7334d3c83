"""Shared by every partner sandbox: queued fault injection and a record of every API call."""

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec
from litestar import MediaType, Response, Router, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException

REDACTED = "***"
_SECRET_PARAMS = frozenset(
    {"secret", "sign", "client_secret", "password", "access_token", "auth_token", "app_auth_token"}
)
# A dev server may run for days; keep the newest calls only.
_MAX_CALLS = 10_000
_ERROR_FIELDS = ("errcode", "code", "sub_code")
# What a `body` fault answers instead of the partner's own answer: `bad_signature` keeps the body
# and breaks its signature (a partner that signs answers in headers: WeChat Pay).
Garbage = Literal["html", "truncated", "empty", "json", "bad_signature"]
_HTML = "<!DOCTYPE html><html><head><title>系统维护中</title></head><body><h1>系统维护中</h1></body></html>"


@dataclass(frozen=True)
class Partner:
    """What one partner sandbox contributes to the app."""

    name: str
    apis: frozenset[str]  # API names a fault may target
    error_fields: frozenset[str]  # which of the Fault's error fields this partner can answer with
    router: Router
    new_state: Callable[[], Any]  # per-app state, stored in app.state[name]
    signs_answers: bool = False  # signs its answers in headers: a `bad_signature` fault applies


class Fault(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The next `times` calls of `partner`'s `api` fail like this."""

    partner: str
    api: str
    times: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    errcode: int | None = None
    code: str | None = None
    sub_code: str | None = None
    http_status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=120_000)] | None = None
    # The answer's body is not the partner's: served as usual, then garbled (with an http_status,
    # that status with this body, the call not served).
    body: Garbage | None = None


class Call(msgspec.Struct):
    """One partner API call as the sandbox received and answered it."""

    seq: int
    at: str  # ISO 8601, UTC
    partner: str
    api: str
    params: dict[str, str]  # secrets redacted
    outcome: str  # "ok", the partner's error code, "http:<status>", or "body:<garbage>"
    injected: bool  # a queued fault shaped this answer


@dataclass
class _Armed:
    fault: Fault
    left: int


class FaultBook:
    """Per-process: the queued faults and the calls received, in arrival order."""

    def __init__(self, partners: Iterable[Partner]) -> None:
        self._partners = {p.name: p for p in partners}
        self._armed: list[_Armed] = []
        self._calls: deque[Call] = deque(maxlen=_MAX_CALLS)
        self._seq = 0

    def arm(self, fault: Fault) -> None:
        partner = self._partners.get(fault.partner)
        if partner is None:
            raise ValidationException(f"partner: must be one of {sorted(self._partners)}")
        if fault.api not in partner.apis:
            raise ValidationException(f"api: {fault.partner} has {sorted(partner.apis)}")
        for field in _ERROR_FIELDS:
            if getattr(fault, field) is not None and field not in partner.error_fields:
                raise ValidationException(f"{field}: not an error field of {fault.partner}")
        if fault.sub_code is not None and fault.code is None:
            raise ValidationException("sub_code: needs code")
        shaped = (fault.errcode, fault.code, fault.http_status, fault.delay_ms, fault.body)
        if all(v is None for v in shaped):
            raise ValidationException("fault: give errcode, code, http_status, delay_ms or body")
        if fault.body is not None and (fault.errcode is not None or fault.code is not None):
            raise ValidationException("body: not with an error code (the answer is garbage, not an error)")
        if fault.body == "bad_signature" and not (partner.signs_answers and fault.http_status is None):
            raise ValidationException("body: bad_signature is for WeChat Pay's own answers (no http_status)")
        self._armed.append(_Armed(fault, fault.times))

    def armed(self) -> list[Fault]:
        return [msgspec.structs.replace(a.fault, times=a.left) for a in self._armed]

    def take(self, partner: str, api: str) -> Fault | None:
        """The oldest fault queued for this API, one use of it spent."""
        for armed in self._armed:
            if armed.fault.partner == partner and armed.fault.api == api:
                armed.left -= 1
                if armed.left == 0:
                    self._armed.remove(armed)
                return armed.fault
        return None

    def clear_faults(self) -> None:
        self._armed.clear()

    def record(self, partner: str, api: str, params: dict[str, str], outcome: str, injected: bool) -> None:
        self._seq += 1
        shown = {k: REDACTED if k in _SECRET_PARAMS else v for k, v in params.items()}
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._calls.append(Call(self._seq, at, partner, api, shown, outcome, injected))

    def calls(self, partner: str | None = None, api: str | None = None) -> list[Call]:
        return [
            c
            for c in self._calls
            if (partner is None or c.partner == partner) and (api is None or c.api == api)
        ]

    def clear_calls(self) -> None:
        self._calls.clear()


async def delay_or_http_failure(fault: Fault | None) -> Response[bytes] | None:
    """Sleep as the fault asks; if it names an HTTP status, the plain answer to send instead."""
    if fault is None:
        return None
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.http_status is None:
        return None
    try:
        text = f"{fault.http_status} {HTTPStatus(fault.http_status).phrase}"
    except ValueError:
        text = f"{fault.http_status} Error"
    content, media_type = text.encode(), MediaType.TEXT.value
    if fault.body is not None:
        content, media_type = garbage(fault.body, content)
    return Response(content, status_code=fault.http_status, media_type=media_type)


def garbage(kind: Garbage, real: bytes) -> tuple[bytes, str]:
    """What a `body` fault answers instead of `real`, and its media type."""
    if kind == "html":  # a proxy's or a maintenance page, answered with the partner's status
        return _HTML.encode(), MediaType.HTML.value
    if kind == "truncated":  # the connection cut mid-answer
        return real[: len(real) // 2], MediaType.JSON.value
    if kind == "json":  # JSON, but not of the partner's shape
        return b'{"garbage":true}', MediaType.JSON.value
    return (real if kind == "bad_signature" else b""), MediaType.JSON.value


def answered(fault: Fault | None, outcome: str) -> str:
    """The outcome a call is recorded with: `body:<garbage>` when a `body` fault replaced its answer."""
    return f"body:{fault.body}" if fault is not None and fault.body is not None else outcome


def garbled(fault: Fault | None, response: Response[Any], content: bytes) -> Response[Any]:
    """`response` (whose body is `content`) as a `body` fault answers it: status kept, body replaced."""
    if fault is None or fault.body is None:
        return response
    replaced, media_type = garbage(fault.body, content)
    return Response(replaced, status_code=response.status_code, media_type=media_type)


def provide_book(state: State) -> FaultBook:
    book: FaultBook = state.faults
    return book


@post("/faults", operation_id="sandboxArmFault")
async def arm_fault(data: Fault, book: FaultBook) -> Fault:
    book.arm(data)
    return data


@get("/faults", operation_id="sandboxListFaults")
async def list_faults(book: FaultBook) -> list[Fault]:
    return book.armed()


@delete("/faults", operation_id="sandboxClearFaults")
async def clear_faults(book: FaultBook) -> None:
    book.clear_faults()


@get("/calls", operation_id="sandboxListCalls")
async def list_calls(book: FaultBook, partner: str | None = None, api: str | None = None) -> list[Call]:
    return book.calls(partner, api)


@delete("/calls", operation_id="sandboxClearCalls")
async def clear_calls(book: FaultBook) -> None:
    book.clear_calls()


router = Router("/_sandbox", route_handlers=[arm_fault, list_faults, clear_faults, list_calls, clear_calls])
