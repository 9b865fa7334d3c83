"""What goes over the wire for bills, pre-settlement, payment and refunds. Amounts in fen."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.ecert.schemas import MaskedIdentity, VisitToken
from backend.platform.schemas import END, IDENTIFIER, TEXT, Fen, Wire

OrderType = Literal["REG", "DIAG", "PHARMACY", "IN_HOSP"]
Category = Literal["A", "B", "C"]
# A payment channel (the mini-program's own), a bank's credit line, or the hospital's counter.
CashMethod = Literal["wechat", "alipay", "credit", "counter"]
Tender = Literal["cash", "card"]  # how the counter took a cash part (tables.py's known_tender)
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=rf"^[A-Za-z0-9._:/-]+{END}")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=TEXT)]


class ItemIn(Wire):
    code: Code
    name: Name
    category: Category
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    unit_price_fen: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]


class BillCreate(Wire):
    """Name the patient by `visit_token` (from a QR decode or face check) or by `cert_no`."""

    order_type: OrderType
    items: Annotated[list[ItemIn], msgspec.Meta(min_length=1, max_length=200)]
    visit_token: VisitToken | None = None
    cert_no: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=IDENTIFIER)] | None = None


class ItemRead(Wire, omit_defaults=False):
    line_no: int
    code: str
    name: str
    category: Category
    quantity: int
    unit_price_fen: int
    amount_fen: int


class InstitutionRead(Wire):
    code: str
    name: str
    level: int


class RefundRead(Wire, omit_defaults=False):
    id: uuid.UUID
    bill_id: uuid.UUID
    amount_fen: int
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int  # given back to the relative's personal account that paid it
    cash_fen: int
    state: str
    reason: str
    created_at: datetime


class BillRead(Wire, omit_defaults=False):
    id: uuid.UUID
    bill_no: str
    state: str
    order_type: OrderType
    institution: InstitutionRead
    patient: MaskedIdentity
    total_fen: int
    items: list[ItemRead]
    # The split once payment has started (null before).
    fund_fen: int | None
    personal_account_fen: int | None
    family_account_fen: int  # paid by a relative's personal account (family mutual aid)
    cash_fen: int | None
    cash_method: str | None
    refunded_fen: int
    refunds: list[RefundRead]
    pay_url: str  # the link in the bill's QR code; it opens the bill in the mini-program
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None


class BillSummary(Wire, omit_defaults=False):
    id: uuid.UUID
    bill_no: str
    state: str
    order_type: OrderType
    institution: str
    total_fen: int
    created_at: datetime


class BillPage(Wire, omit_defaults=False):
    items: list[BillSummary]
    next_before: datetime | None  # pass as `before` for the next page


class PresettleRequest(Wire):
    use_personal_account: bool = True
    # Family mutual aid (家庭共济): the payer's own personal account pays what is left of the
    # relative's in-scope self part. Only on a relative's bill, under a link granting `pay`.
    family_account: bool = False


class ItemSplitRead(Wire, omit_defaults=False):
    code: str
    category: Category
    amount_fen: int
    self_pay_fen: int
    self_first_fen: int
    deductible_fen: int
    copay_fen: int
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    rule: str


class PolicyRead(Wire):
    region_code: str
    insurance_type: str
    year: int


class PresettleRead(Wire, omit_defaults=False):
    total_fen: int
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    personal_account_balance_fen: int  # the patient's own
    family_account_balance_fen: int | None  # the payer's, when paying by family mutual aid
    policy: PolicyRead
    items: list[ItemSplitRead]


class PayRequest(Wire):
    use_personal_account: bool = True
    family_account: bool = False  # as in PresettleRequest
    cash_method: CashMethod | None = None  # needed when a cash part is left


class PaymentRead(Wire, omit_defaults=False):
    bill_id: uuid.UUID
    state: str
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    cash_method: str | None
    out_trade_no: str | None  # the cash order's number, as the channel's payment record shows it
    # What the mini-program launches the channel's payment with, or, for the counter, where and
    # what to pay there (null when nothing is left to pay).
    launch: dict[str, str] | None


class RefundCreate(Wire):
    reason: Name
    amount_fen: Fen | None = None  # all that is left when absent


class CounterPaymentCreate(Wire):
    """What the hospital's cashier took for a bill's cash part left for the counter."""

    amount_fen: Fen  # the whole cash part
    receipt_no: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=IDENTIFIER)]
    tender: Tender


class CounterPaymentRead(Wire, omit_defaults=False):
    bill_id: uuid.UUID
    bill_no: str
    state: str  # the bill's: PAID, or what refunds made of it since
    out_trade_no: str  # the cash part's number
    amount_fen: int
    receipt_no: str
    tender: Tender
    paid_at: datetime


class WechatPayRefusal(msgspec.Struct):
    """What WeChat Pay reads from our refusal of a notification (its format, not our envelope)."""

    code: Literal["FAIL"]
    message: str
