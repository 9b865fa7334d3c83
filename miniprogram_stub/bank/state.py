"""The bank's per-process state, kept in the app so each app (one per test process) starts clean."""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from litestar.datastructures import State

from miniprogram_stub.bank.books import Books
from miniprogram_stub.bank.delivery import Courier
from miniprogram_stub.bank.faults import ApiFaultBook
from miniprogram_stub.bank.records import BankError, Event

T = TypeVar("T")
# A dev server may run for days; keep the newest calls only.
_MAX_CALLS = 10_000


class Call(msgspec.Struct):
    """One API request from medpay, as received and answered."""

    api: str  # method and path, e.g. "POST /v1/credit/disbursements"
    body: Any  # the JSON body, its text if it is not JSON, None if empty
    status: int


def decode(raw: bytes, schema: type[T], empty: bytes | None = None) -> T:
    """The body as `schema`, or 400 BAD_REQUEST; an empty body reads as `empty` when given."""
    try:
        return msgspec.json.decode(raw or empty or b"", type=schema)
    except msgspec.DecodeError as exc:
        raise BankError(400, "BAD_REQUEST", str(exc)) from None


def convert(obj: Any, schema: type[T]) -> T:
    try:
        return msgspec.convert(obj, schema)
    except msgspec.ValidationError as exc:
        raise BankError(400, "BAD_REQUEST", str(exc)) from None


@dataclass
class _Seen:
    request: msgspec.Struct
    answer: msgspec.Struct


@dataclass
class Bank:
    courier: Courier
    books: Books = field(default_factory=Books)
    calls: deque[Call] = field(default_factory=lambda: deque(maxlen=_MAX_CALLS))
    api_faults: ApiFaultBook = field(default_factory=ApiFaultBook)
    _seen: dict[str, dict[str, _Seen]] = field(default_factory=dict)  # by API, then by id

    def emit(self, event: Event) -> None:
        self.courier.send(event, self.books.clock.stamp(), self.books.rules.callback_delay_ms)

    def once(
        self, api: str, key: str, request: msgspec.Struct, accept: Callable[[], msgspec.Struct]
    ) -> msgspec.Struct:
        """The answer `accept()` gave the first request with this id; 409 if this one differs.

        A refused request (4xx) left nothing behind, so its id may be used again.
        """
        seen = self._seen.setdefault(api, {})
        earlier = seen.get(key)
        if earlier is not None:
            if earlier.request != request:
                raise BankError(409, "ID_REUSED")
            return earlier.answer
        answer = accept()
        seen[key] = _Seen(request, answer)
        return answer

    def record(self, api: str, raw: bytes, status: int) -> None:
        body: Any = None
        if raw:
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                body = raw.decode(errors="replace")
        self.calls.append(Call(api, body, status))

    def reset(self) -> None:
        """Everything but the callback URL back to how the process started."""
        self.courier.reset()
        self.api_faults.clear()
        self.books = Books()
        self.calls.clear()
        self._seen.clear()


def provide_bank(state: State) -> Bank:
    bank: Bank = state.bank
    return bank
