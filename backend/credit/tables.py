"""Banks, their callback keys and credit products; patients' consents, credit lines, drawdowns,
repayments and refunds; and the states each moves through."""

from enum import StrEnum

from piccolo.columns import (
    UUID,
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.constraints import Check, Unique
from piccolo.table import Table

from backend.auth.tables import User
from backend.billing.tables import Bill, one_of
from backend.ecert.tables import InsuredPerson


class LineStatus(StrEnum):
    """APPLIED -> ACTIVE or DECLINED; ACTIVE <-> FROZEN (overdue, then repaid); CLOSED."""

    APPLIED = "APPLIED"
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class DrawdownStatus(StrEnum):
    """RESERVED (on the line, the bank asked) -> DISBURSED (the bank paid the hospital) -> REPAID;
    or FAILED (the bank declined; the reservation released)."""

    RESERVED = "RESERVED"
    DISBURSED = "DISBURSED"
    REPAID = "REPAID"
    FAILED = "FAILED"


class RepaymentStatus(StrEnum):
    """AWAITING_PAYMENT (at the bank's cashier) -> POSTED, or FAILED."""

    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    POSTED = "POSTED"
    FAILED = "FAILED"


class Bank(Table, tablename="bank"):
    """A bank offering credit lines; it is also a partner client (`kind=bank`)."""

    id = Serial(primary_key=True)
    code = Varchar(length=32, unique=True)  # in the callback URL: /api/v1/callbacks/banks/{code}
    name = Varchar(length=100)
    api_base = Varchar(length=300)
    client_id = Varchar(length=64)  # its partner client
    created_at = Timestamptz()


class BankKey(Table, tablename="bank_key"):
    """A public key the bank signs callbacks with (Standard Webhooks `whpk_`). Several are live at
    once while the bank rotates; a retired key is accepted until `valid_until`."""

    id = Serial(primary_key=True)
    bank_id = ForeignKey(Bank, null=False, index=True)
    key_id = Varchar(length=64)  # the bank's name for it
    public_key = Varchar(length=100)
    added_at = Timestamptz()
    valid_until = Timestamptz(null=True, default=None)

    key_once_per_bank = Unique([bank_id, key_id])


class CreditProduct(Table, tablename="credit_product"):
    id = Serial(primary_key=True)
    bank_id = ForeignKey(Bank, null=False, index=True)
    code = Varchar(length=32)
    name = Varchar(length=100)
    limit_fen = BigInt(default=500_000)
    interest_free_days = Integer(default=49)
    daily_interest_bp = Integer(default=5)  # after the interest-free days, per day
    terms_version = Varchar(length=32)
    terms_text = Text()
    active = Boolean(default=True)
    created_at = Timestamptz()

    code_once_per_bank = Unique([bank_id, code])
    sensible_terms = Check(
        "limit_fen > 0 AND interest_free_days BETWEEN 0 AND 365 AND daily_interest_bp >= 0"
    )


class CreditLine(Table, tablename="credit_line"):
    """A patient's line at a bank. `used_fen` is what open drawdowns hold, never above the limit."""

    id = UUID(primary_key=True)
    product_id = ForeignKey(CreditProduct, null=False, index=True)
    bank_id = ForeignKey(Bank, null=False, index=True)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    user_id = ForeignKey(User, null=False, index=True)  # who applied, and consented
    status = Varchar(length=16, index=True)  # a LineStatus
    limit_fen = BigInt(default=0)
    used_fen = BigInt(default=0)
    bank_line_ref = Varchar(length=64, null=True, default=None)
    expires_on = Date(null=True, default=None)
    decline_reason = Varchar(length=100, null=True, default=None)
    # The consent: who accepted which terms, when.
    terms_version = Varchar(length=32)
    terms_digest = Varchar(length=64)  # SHA-256 of the terms text accepted
    consented_at = Timestamptz()
    applied_at = Timestamptz()
    decided_at = Timestamptz(null=True, default=None)
    frozen_at = Timestamptz(null=True, default=None)
    request_key = Varchar(length=255, null=True, default=None)

    known_status = one_of("status", LineStatus)
    used_within_limit = Check("used_fen >= 0 AND used_fen <= limit_fen")


class Drawdown(Table, tablename="credit_drawdown"):
    """A bill's cash part drawn on a line. What is owed: disbursed + interest - repaid - refunded."""

    id = UUID(primary_key=True)
    line_id = ForeignKey(CreditLine, null=False, index=True)
    bill_id = ForeignKey(Bill, null=False, index=True)
    out_trade_no = Varchar(length=32, unique=True)  # its bill's cash part
    amount_fen = BigInt()
    status = Varchar(length=16, index=True)  # a DrawdownStatus
    disbursement_ref = Varchar(length=64, null=True, default=None)
    disbursed_at = Timestamptz(null=True, default=None)
    due_date = Date(null=True, default=None, index=True)
    principal_fen = BigInt(default=0)  # principal still owed (on the line: `used_fen`)
    interest_fen = BigInt(default=0)  # interest the bank charged
    repaid_fen = BigInt(default=0)  # all repaid: principal and interest
    refunded_fen = BigInt(default=0)  # owed taken off by refunds
    repaying_fen = BigInt(default=0)  # asked of the bank's cashier, not yet posted
    failure_reason = Varchar(length=100, null=True, default=None)
    # Drawn by a link's holder for a relative's bill, within the link's monthly `credit` cap.
    family_link_id = Integer(null=True, default=None, index=True)
    family_link_version = Integer(null=True, default=None)  # the link's grants it was drawn under
    created_at = Timestamptz()

    known_status = one_of("status", DrawdownStatus)
    amounts_in_range = Check(
        "amount_fen > 0 AND principal_fen BETWEEN 0 AND amount_fen AND interest_fen >= 0 "
        "AND repaid_fen >= 0 AND refunded_fen >= 0 AND repaying_fen >= 0"
    )


class Repayment(Table, tablename="credit_repayment"):
    id = UUID(primary_key=True)
    drawdown_id = ForeignKey(Drawdown, null=False, index=True)
    user_id = ForeignKey(User, null=True, default=None)  # none for the bank's auto-debit
    source = Varchar(length=16)  # patient | auto_debit
    channel = Varchar(length=16, null=True, default=None)
    amount_fen = BigInt()
    principal_fen = BigInt(default=0)
    interest_fen = BigInt(default=0)
    status = Varchar(length=20, index=True)  # a RepaymentStatus
    bank_repayment_ref = Varchar(length=64, unique=True)  # ours for the patient's, the bank's for its own
    cashier_url = Varchar(length=300, null=True, default=None)
    request_key = Varchar(length=255, null=True, default=None)
    created_at = Timestamptz()
    posted_at = Timestamptz(null=True, default=None)

    known_status = one_of("status", RepaymentStatus)
    repayment_requested_once = Unique([user_id, request_key])


class CreditRefund(Table, tablename="credit_refund"):
    """A refund of a credit-paid bill as the bank posted it: what it took off the debt, and what
    it returned to the patient (what had been repaid already)."""

    id = Serial(primary_key=True)
    out_refund_no = Varchar(length=64, unique=True)  # the bill refund's
    drawdown_id = ForeignKey(Drawdown, null=False, index=True)
    amount_fen = BigInt()
    reduced_owed_fen = BigInt()
    returned_fen = BigInt()
    posted_at = Timestamptz()

    parts_sum = Check(
        "reduced_owed_fen >= 0 AND returned_fen >= 0 AND reduced_owed_fen + returned_fen = amount_fen"
    )
