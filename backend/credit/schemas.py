"""What goes over the wire for credit: applications, the patient's lines, repayments, and the
banks' callbacks."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.platform.schemas import PARTNER_TEXT, PRINTED, TEXT, Fen, FenOrZero, Wire

Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=PRINTED)]
Reason = Annotated[str, msgspec.Meta(max_length=100, pattern=PARTNER_TEXT)]  # the bank's words


class Consent(Wire):
    terms_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=TEXT)]
    accepted: bool


class ApplicationCreate(Wire):
    product_id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    consent: Consent


class RepaymentCreate(Wire):
    amount_fen: Fen
    drawdown_id: uuid.UUID | None = None  # the earliest due when left out


class ProductRead(Wire, omit_defaults=False):
    id: int
    bank: str
    name: str
    limit_fen: int
    interest_free_days: int
    daily_interest_bp: int
    terms_version: str
    terms_text: str


class DrawdownRead(Wire, omit_defaults=False):
    id: uuid.UUID
    bill_id: uuid.UUID
    amount_fen: int
    status: str
    disbursed_at: datetime | None
    due_date: date | None
    principal_fen: int  # principal still owed
    interest_accrued_fen: int  # interest from the due date to today, not yet charged
    owed_fen: int  # what repays it in full today
    repaid_fen: int
    refunded_fen: int


class LineRead(Wire, omit_defaults=False):
    id: uuid.UUID
    bank: str
    product_id: int
    status: str
    limit_fen: int
    used_fen: int
    available_fen: int
    expires_on: date | None
    decline_reason: str | None
    applied_at: datetime
    terms_version: str
    drawdowns: list[DrawdownRead]


class CreditRead(Wire, omit_defaults=False):
    lines: list[LineRead]
    products: list[ProductRead]


class RepaymentRead(Wire, omit_defaults=False):
    id: uuid.UUID
    drawdown_id: uuid.UUID
    amount_fen: int
    status: str
    cashier_url: str | None  # the bank's cashier, where the patient pays the bank


# -- the banks' callbacks ----------------------------------------------------------------------

EventType = Literal[
    "line.approved",
    "line.declined",
    "drawdown.disbursed",
    "drawdown.failed",
    "repayment.posted",
    "repayment.failed",
    "refund.posted",
]


class BankEvent(msgspec.Struct, frozen=True):
    """A callback's body: its type, when it happened at the bank, and its data."""

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    occurred_at: datetime
    data: dict[str, Any]


class LineApproved(msgspec.Struct, frozen=True):
    application_id: uuid.UUID
    line_ref: Ref
    limit_fen: Fen
    expires_on: date


class LineDeclined(msgspec.Struct, frozen=True):
    application_id: uuid.UUID
    reason: Reason


class DrawdownDisbursed(msgspec.Struct, frozen=True):
    drawdown_id: uuid.UUID
    amount_fen: Fen
    disbursement_ref: Ref
    disbursed_at: datetime
    line_ref: Ref | None = None
    due_date: date | None = None


class DrawdownFailed(msgspec.Struct, frozen=True):
    drawdown_id: uuid.UUID
    reason: Reason


class RepaymentPosted(msgspec.Struct, frozen=True):
    repayment_id: Ref
    drawdown_id: uuid.UUID
    amount_fen: Fen
    principal_fen: FenOrZero
    interest_fen: FenOrZero
    source: Literal["patient", "auto_debit"]
    posted_at: datetime


class RepaymentFailed(msgspec.Struct, frozen=True):
    repayment_id: Ref
    drawdown_id: uuid.UUID
    reason: Reason


class RefundPosted(msgspec.Struct, frozen=True):
    refund_id: Ref
    drawdown_id: uuid.UUID
    amount_fen: Fen
    reduced_owed_fen: FenOrZero
    returned_fen: FenOrZero
    posted_at: datetime
