"""Faults of the bank: `POST /_bank/faults` arms one for its callbacks (the next `times` matching
callbacks carry it), `POST /_bank/api-faults` one for its API (the next `times` requests to it)."""

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

EventType = Literal[
    "line.approved",
    "line.declined",
    "drawdown.disbursed",
    "drawdown.failed",
    "repayment.posted",
    "repayment.failed",
    "refund.posted",
]
KeyName = Literal["k1", "k2", "k3"]


class _Fault(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind"):
    times: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    event_type: EventType | None = None  # None: any callback


class Duplicate(_Fault, tag="duplicate"):
    """Sent `copies` times at once, the same webhook-id and body."""

    copies: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


class Reorder(_Fault, tag="reorder"):
    """Held back, then sent just after the next callback made after it has been sent."""


class Delay(_Fault, tag="delay"):
    """Waits `delay_ms` before its first attempt, out of its drawdown's order."""

    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=120_000)]


class CorruptSignature(_Fault, tag="corrupt_signature"):
    """A byte of every signature flipped, on every attempt."""


class SignWith(_Fault, tag="sign_with"):
    """Signed with these keys instead of the current ones."""

    keys: Annotated[list[KeyName], msgspec.Meta(min_length=1)]


class StaleTimestamp(_Fault, tag="stale_timestamp"):
    """webhook-timestamp 600 s in the past, correctly signed over."""


class UnknownDrawdown(_Fault, tag="unknown_drawdown"):
    """`data.drawdown_id` replaced by a fresh random UUID; only callbacks that have one match."""


Fault = Duplicate | Reorder | Delay | CorruptSignature | SignWith | StaleTimestamp | UnknownDrawdown


@dataclass
class _Armed:
    fault: Fault
    left: int


@dataclass
class FaultBook:
    _armed: list[_Armed] = field(default_factory=list)

    def arm(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault, fault.times))

    def armed(self) -> list[Fault]:
        return [msgspec.structs.replace(a.fault, times=a.left) for a in self._armed]

    def clear(self) -> None:
        self._armed.clear()

    def take(self, event_type: str, data: dict[str, Any]) -> list[Fault]:
        """The faults this callback carries: the oldest armed of each kind that matches, one use spent."""
        taken: list[Fault] = []
        for armed in list(self._armed):
            fault = armed.fault
            if fault.event_type is not None and fault.event_type != event_type:
                continue
            if isinstance(fault, UnknownDrawdown) and "drawdown_id" not in data:
                continue
            if any(type(t) is type(fault) for t in taken):
                continue
            taken.append(fault)
            armed.left -= 1
            if armed.left == 0:
                self._armed.remove(armed)
        return taken


# -- the bank's API ---------------------------------------------------------------------------

BankApi = Literal[
    "applications",
    "disbursements",
    "disbursement-query",
    "repayments",
    "repayment-query",
    "refunds",
    "refund-query",
]
Garbage = Literal["html", "truncated", "empty", "json"]
_HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class ApiFault(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """The next `times` requests to `api` are answered this way.

    With `acts` (the default unless an `http_status` is given) the bank does what was asked first,
    as it would, and only its answer is late (`delay_ms`), of another status, or garbled (`body`):
    the request was seen. Without, it waits `delay_ms` and answers `http_status` having done nothing.
    """

    api: BankApi
    times: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    http_status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=120_000)] | None = None
    body: Garbage | None = None
    acts: bool | None = None

    def __post_init__(self) -> None:
        if self.http_status is None and self.delay_ms is None and self.body is None:
            raise ValueError("give http_status, delay_ms or body")
        if self.acts is None:
            self.acts = self.http_status is None
        elif not self.acts and self.http_status is None:
            raise ValueError("acts: false needs an http_status (what a request it never took is answered)")


def garbage(kind: Garbage, real: bytes) -> tuple[bytes, str]:
    """What a `body` fault answers instead of `real`, and its media type."""
    if kind == "html":
        return _HTML, "text/html"
    if kind == "truncated":
        return real[: len(real) // 2], "application/json"
    if kind == "json":
        return b'{"garbage":true}', "application/json"
    return b"", "application/json"


@dataclass
class _ArmedApi:
    fault: ApiFault
    left: int


@dataclass
class ApiFaultBook:
    _armed: list[_ArmedApi] = field(default_factory=list)

    def arm(self, fault: ApiFault) -> None:
        self._armed.append(_ArmedApi(fault, fault.times))

    def armed(self) -> list[ApiFault]:
        return [msgspec.structs.replace(a.fault, times=a.left) for a in self._armed]

    def clear(self) -> None:
        self._armed.clear()

    def take(self, api: str) -> ApiFault | None:
        """The oldest fault armed for this API, one use of it spent."""
        for armed in self._armed:
            if armed.fault.api == api:
                armed.left -= 1
                if armed.left == 0:
                    self._armed.remove(armed)
                return armed.fault
        return None
