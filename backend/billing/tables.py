"""Bills and their items, settlement policies, year-to-date usage, cash payments and refunds,
and the states each moves through."""

from enum import StrEnum

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    BigInt,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.constraints import Check, Unique
from piccolo.table import Table

from backend.ecert.tables import InsuredPerson, Visit
from backend.hospitals.tables import Institution


class BillState(StrEnum):
    """CREATED -> PAYING -> PAID (-> PARTIALLY_REFUNDED -> REFUNDED); CREATED or PAYING -> CLOSED
    (expired unpaid) or FAILED (the channel failed the payment)."""

    CREATED = "CREATED"
    PAYING = "PAYING"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class CashState(StrEnum):
    """A cash part: CREATED (the order is open) -> PAID, or CLOSED / FAILED with its bill."""

    CREATED = "CREATED"
    PAID = "PAID"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class RefundState(StrEnum):
    """REQUESTED (reserved, the channel not yet asked or not yet answered) -> PROCESSING ->
    SUCCEEDED, or REJECTED (the channel refused; nothing moved). ATTENTION: accepted, then the
    channel could not pay it out; it stands in the books until the channel reports SUCCEEDED."""

    REQUESTED = "REQUESTED"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    REJECTED = "REJECTED"
    ATTENTION = "ATTENTION"


def one_of(column: str, states: type[StrEnum]) -> Check:
    """The CHECK constraint of a state column: the database knows the same states as the code."""
    return Check(f"{column} IN ('" + "', '".join(states) + "')")


class SettlementPolicy(Table, tablename="settlement_policy"):
    """The insurance rules of one region, insurance type and year (see billing/settlement.py)."""

    id = Serial(primary_key=True)
    region_code = Varchar(length=6)
    insurance_type = Varchar(length=16)
    year = Integer()
    deductible_fen = BigInt()
    ratio_level1_bp = Integer()
    ratio_level2_bp = Integer()
    ratio_level3_bp = Integer()
    class_b_self_ratio_bp = Integer()
    annual_cap_fen = BigInt()
    personal_account_pays = Array(base_column=Varchar(length=16))
    updated_at = Timestamptz()

    policy_once_per_year = Unique([region_code, insurance_type, year])
    ratios_in_range = Check(
        "ratio_level1_bp BETWEEN 0 AND 10000 AND ratio_level2_bp BETWEEN 0 AND 10000 "
        "AND ratio_level3_bp BETWEEN 0 AND 10000 AND class_b_self_ratio_bp BETWEEN 0 AND 10000"
    )


class InsuredYearUsage(Table, tablename="insured_year_usage"):
    """What an insured person has used of the year's deductible and fund cap."""

    id = Serial(primary_key=True)
    insured_id = ForeignKey(InsuredPerson, null=False)
    year = Integer()
    deductible_met_fen = BigInt(default=0)
    fund_paid_fen = BigInt(default=0)
    updated_at = Timestamptz()

    usage_once_per_year = Unique([insured_id, year])
    not_negative = Check("deductible_met_fen >= 0 AND fund_paid_fen >= 0")


class Bill(Table, tablename="bill"):
    id = UUID(primary_key=True)
    bill_no = Varchar(length=32, unique=True)
    institution_id = ForeignKey(Institution, null=False, index=True)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    visit_id = ForeignKey(Visit, null=True, default=None)
    created_by = Varchar(length=64)  # partner client id
    # Its request's key (idempotency.request_key): a repeat after a failure finds this bill again.
    request_key = Varchar(length=255, null=True, default=None)
    order_type = Varchar(length=16)
    state = Varchar(length=24, index=True)  # a BillState
    total_fen = BigInt()
    # The split, fixed when payment starts.
    fund_fen = BigInt(null=True, default=None)
    personal_account_fen = BigInt(null=True, default=None)
    # Family mutual aid (家庭共济): what a relative's personal account paid, under which link.
    family_account_fen = BigInt(default=0)
    family_insured_id = ForeignKey(InsuredPerson, null=True, default=None)
    family_link_id = Integer(null=True, default=None)
    family_link_version = Integer(null=True, default=None)  # the link's grants it was paid under
    cash_fen = BigInt(null=True, default=None)
    deductible_fen = BigInt(null=True, default=None)
    policy_year = Integer(null=True, default=None)
    settlement = JSONB(null=True, default=None)  # the per-item split and its rules
    cash_method = Varchar(length=16, null=True, default=None)
    payer_user_id = Integer(null=True, default=None)
    refunded_fen = BigInt(default=0)  # by refunds the channel accepted
    created_at = Timestamptz()
    expires_at = Timestamptz()
    paying_at = Timestamptz(null=True, default=None)
    paid_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)  # closed or failed
    ended_reason = Text(null=True, default=None)
    updated_at = Timestamptz()

    created_once = Unique([created_by, request_key])
    known_state = one_of("state", BillState)
    parts_sum_to_total = Check(
        "fund_fen IS NULL OR fund_fen + personal_account_fen + family_account_fen + cash_fen = total_fen"
    )
    family_aid_named = Check("(family_account_fen = 0) = (family_link_id IS NULL)")
    refunds_within_total = Check("refunded_fen BETWEEN 0 AND total_fen")


class BillItem(Table, tablename="bill_item"):
    id = Serial(primary_key=True)
    bill_id = ForeignKey(Bill, null=False, index=True)
    line_no = Integer()
    code = Varchar(length=64)
    name = Varchar(length=200)
    category = Varchar(length=1)
    quantity = Integer()
    unit_price_fen = BigInt()
    amount_fen = BigInt()

    known_category = Check("category IN ('A', 'B', 'C')")


class CashPayment(Table, tablename="cash_payment"):
    """The cash part of a bill, collected by a channel, drawn on a credit line or taken at the
    hospital's counter. A bill has one live (CREATED or PAID) at a time: when a bank declines a
    drawdown, the patient pays the cash part again by another attempt (a unique index in the
    migration keeps it to one)."""

    id = Serial(primary_key=True)
    bill_id = ForeignKey(Bill, null=False, index=True)
    method = Varchar(length=16)  # wechat | alipay | credit | counter
    out_trade_no = Varchar(length=32, unique=True)
    amount_fen = BigInt()
    state = Varchar(length=16, index=True)  # a CashState
    launch = JSONB(null=True, default=None)  # what the mini-program launches payment with
    transaction_id = Varchar(length=64, null=True, default=None)
    # The channel's merchant, a bank, or the institution whose counter collects it.
    merchant_id = Varchar(length=64, null=True, default=None)
    account = Varchar(length=100, default="")  # the ledger account the cash arrives through
    # Whom a relative pays for, as the channel's order names them, fixed once (its encrypted
    # fields differ each time they are made): every repeat of the order is the same order.
    relative = JSONB(null=True, default=None)
    # Taken at the counter: the hospital's own receipt number, how it was paid, which system said so.
    receipt_no = Varchar(length=64, null=True, default=None)
    tender = Varchar(length=8, null=True, default=None)  # cash | card (schemas.Tender)
    recorded_by = Varchar(length=64, null=True, default=None)  # partner client id
    created_at = Timestamptz()
    paid_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)

    known_state = one_of("state", CashState)
    # A hospital's receipt pays one cash part (merchant_id: the institution's code).
    receipt_once = Unique([merchant_id, receipt_no])
    known_tender = Check("tender IS NULL OR tender IN ('cash', 'card')")


class Refund(Table, tablename="bill_refund"):
    id = UUID(primary_key=True)
    bill_id = ForeignKey(Bill, null=False, index=True)
    out_refund_no = Varchar(length=64, unique=True)
    amount_fen = BigInt()
    fund_fen = BigInt()
    personal_account_fen = BigInt()
    family_account_fen = BigInt(default=0)
    cash_fen = BigInt()
    deductible_fen = BigInt()
    reason = Varchar(length=200)
    state = Varchar(length=16, index=True)  # a RefundState
    channel_refund_id = Varchar(length=64, null=True, default=None)
    requested_by = Varchar(length=64)
    request_key = Varchar(length=255, null=True, default=None)  # as for bills
    created_at = Timestamptz()
    accepted_at = Timestamptz(null=True, default=None)
    succeeded_at = Timestamptz(null=True, default=None)
    error = Text(null=True, default=None)

    requested_once = Unique([requested_by, request_key])
    known_state = one_of("state", RefundState)
