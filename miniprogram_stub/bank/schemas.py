"""The bank API's requests and answers, field for field as the contract with medpay has them."""

from typing import Annotated, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Fen = Annotated[int, msgspec.Meta(gt=0)]
InsuranceType = Literal["employee", "resident"]
Channel = Literal["wechat", "alipay"]
Source = Literal["patient", "auto_debit"]


class Applicant(msgspec.Struct, forbid_unknown_fields=True):
    ref: Id
    region_code: Code
    insurance_type: InsuranceType
    age: Annotated[int, msgspec.Meta(ge=0, le=200)]


class Application(msgspec.Struct, forbid_unknown_fields=True):
    application_id: Id
    product_code: Code
    applicant: Applicant
    requested_limit_fen: Fen


class Payee(msgspec.Struct, forbid_unknown_fields=True):
    institution_code: Code
    institution_name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Disbursement(msgspec.Struct, forbid_unknown_fields=True):
    drawdown_id: Id
    line_ref: Id
    amount_fen: Fen
    payee: Payee
    bill_no: Id
    interest_free_days: Annotated[int, msgspec.Meta(ge=0, le=3650)]


class RepaymentRequest(msgspec.Struct, forbid_unknown_fields=True):
    repayment_id: Id
    drawdown_id: Id
    amount_fen: Fen
    channel: Channel


class RefundRequest(msgspec.Struct, forbid_unknown_fields=True):
    refund_id: Id
    drawdown_id: Id
    amount_fen: Fen


class ApplicationAccepted(msgspec.Struct):
    application_id: str
    status: Literal["RECEIVED"] = "RECEIVED"


class DisbursementAccepted(msgspec.Struct):
    drawdown_id: str
    status: Literal["ACCEPTED"] = "ACCEPTED"


class RepaymentAccepted(msgspec.Struct):
    repayment_id: str
    status: Literal["AWAITING_PAYMENT"]
    cashier_url: str


class RefundAccepted(msgspec.Struct):
    refund_id: str
    status: Literal["ACCEPTED"] = "ACCEPTED"


class DisbursementView(msgspec.Struct):
    drawdown_id: str
    status: Literal["DISBURSED", "FAILED"]
    amount_fen: int
    disbursement_ref: str | None
    disbursed_at: str | None
    due_date: str | None
    reason: str | None


class RepaymentView(msgspec.Struct):
    repayment_id: str
    drawdown_id: str
    status: Literal["AWAITING_PAYMENT", "POSTED", "FAILED"]
    amount_fen: int
    principal_fen: int  # 0 until posted
    interest_fen: int


class RefundView(msgspec.Struct):
    refund_id: str
    drawdown_id: str
    status: Literal["POSTED"]
    amount_fen: int
    reduced_owed_fen: int
    returned_fen: int


# `GET /_bank/books`: the bank's side, for tests comparing it with medpay's books.


class LineRow(msgspec.Struct):
    line_ref: str
    application_id: str
    limit_fen: int
    status: Literal["ACTIVE", "FROZEN"]
    principal_outstanding_fen: int


class DrawdownRow(msgspec.Struct):
    drawdown_id: str
    line_ref: str
    amount_fen: int
    status: str
    disbursed_at: str | None
    due_date: str | None
    principal_outstanding_fen: int
    interest_charged_fen: int
    repaid_fen: int  # all money received: principal and interest
    reduced_by_refunds_fen: int
    returned_fen: int
    owed_fen: int  # principal outstanding and interest accrued, not paid, as of the bank's today


class RepaymentRow(msgspec.Struct):
    repayment_id: str
    drawdown_id: str
    status: str
    amount_fen: int
    principal_fen: int
    interest_fen: int
    source: Source
    posted_at: str | None


class RefundRow(msgspec.Struct):
    refund_id: str
    drawdown_id: str
    status: str
    amount_fen: int
    reduced_owed_fen: int
    returned_fen: int
    posted_at: str


class BooksView(msgspec.Struct):
    lines: list[LineRow]
    drawdowns: list[DrawdownRow]
    repayments: list[RepaymentRow]
    refunds: list[RefundRow]
