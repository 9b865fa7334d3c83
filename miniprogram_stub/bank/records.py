"""What the bank keeps: its rules and clock, lines, drawdowns, repayments and refunds, in fen."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec

from miniprogram_stub.bank import config
from miniprogram_stub.bank.schemas import InsuranceType, RefundView, RepaymentView, Source

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
LineStatus = Literal["ACTIVE", "FROZEN"]


class BankError(Exception):
    """A refusal answered as `{"code", ...}` with its HTTP status; nothing was booked."""

    def __init__(self, status: int, code: str, message: str | None = None, **extra: Any) -> None:
        super().__init__(message or code)
        self.status = status
        self.body: dict[str, Any] = {"code": code}
        if message is not None:
            self.body["message"] = message
        self.body.update(extra)


def not_found() -> BankError:
    return BankError(404, "NOT_FOUND")


class Rules(msgspec.Struct, forbid_unknown_fields=True):
    """How the bank decides; `PUT /_bank/rules` changes some of them."""

    min_age: NonNegative = 18
    decline_insurance_types: list[InsuranceType] = msgspec.field(default_factory=list)
    decline_refs: list[str] = msgspec.field(default_factory=list)
    max_limit_fen: Annotated[int, msgspec.Meta(gt=0)] = 500_000
    fail_disbursements: bool = False
    daily_interest_bp: NonNegative = 5
    callback_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=120_000)] = 0


@dataclass
class Clock:
    """The bank's business date: fixed by `PUT /_bank/clock`, else Beijing's real date.

    Its `now` is that date at the real time of day, so timestamps and due dates agree.
    """

    fixed: date | None = None

    def today(self) -> date:
        return self.fixed or datetime.now(config.SHANGHAI).date()

    def now(self) -> datetime:
        real = datetime.now(config.SHANGHAI)
        if self.fixed is None:
            return real.astimezone(UTC)
        return datetime.combine(self.fixed, real.timetz()).astimezone(UTC)

    def stamp(self) -> str:
        return self.now().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Event:
    """A callback to make; callbacks of one `stream` (a drawdown, an application) keep their order."""

    type: str
    data: dict[str, Any]
    stream: str


@dataclass
class Line:
    line_ref: str
    application_id: str
    limit_fen: int
    expires_on: date
    status: LineStatus = "ACTIVE"


@dataclass
class Drawdown:
    drawdown_id: str
    line_ref: str
    amount_fen: int
    status: Literal["DISBURSED", "FAILED"]
    reason: str | None = None
    disbursement_ref: str | None = None
    disbursed_at: str | None = None
    due_date: date | None = None
    accrued_through: date | None = None  # interest is noted up to this business date
    principal_fen: int = 0  # outstanding
    principal_repaid_fen: int = 0
    interest_charged_fen: int = 0
    interest_paid_fen: int = 0
    interest_noted_fen: int = 0  # accrued before a refund, not charged yet
    reduced_by_refunds_fen: int = 0
    returned_fen: int = 0

    @property
    def refunded_fen(self) -> int:
        return self.reduced_by_refunds_fen + self.returned_fen

    @property
    def disbursed_fen(self) -> int:
        return self.amount_fen if self.status == "DISBURSED" else 0


@dataclass
class Repayment:
    repayment_id: str
    drawdown_id: str
    amount_fen: int
    source: Source
    status: Literal["AWAITING_PAYMENT", "POSTED", "FAILED"] = "AWAITING_PAYMENT"
    principal_fen: int = 0
    interest_fen: int = 0
    posted_at: str | None = None

    def view(self) -> RepaymentView:
        return RepaymentView(
            self.repayment_id,
            self.drawdown_id,
            self.status,
            self.amount_fen,
            self.principal_fen,
            self.interest_fen,
        )


@dataclass
class Refund:
    refund_id: str
    drawdown_id: str
    amount_fen: int
    reduced_owed_fen: int
    returned_fen: int
    posted_at: str

    def view(self) -> RefundView:
        return RefundView(
            self.refund_id,
            self.drawdown_id,
            "POSTED",
            self.amount_fen,
            self.reduced_owed_fen,
            self.returned_fen,
        )
