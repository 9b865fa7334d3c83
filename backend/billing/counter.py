"""The hospital's counter as a cash method: the fund's and personal account's parts settle when the
patient pays (on the phone, or at a kiosk) and the cash part is left for the cashier, who records
what it took (`record`); the cash arrives through the institution's own cash desk account, and is
handed back there when the bill is refunded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.billing import bills, methods, records
from backend.billing import cash as cash_parts
from backend.billing.parties import CHINA, locked_bill
from backend.billing.records import BillRecord, CashRecord
from backend.billing.schemas import CounterPaymentCreate, CounterPaymentRead
from backend.billing.tables import BillState, CashPayment, CashState
from backend.hospitals import service as hospitals
from backend.ledger import service as ledger
from backend.oauth.service import Partner
from backend.partners.channels import RefundStatus
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

COUNTER = "counter"


async def _reserve(
    rt: Runtime, patient: Patient, bill: BillRecord, method: str, cash_fen: int, out_trade_no: str
) -> methods.Reserved:
    """Nothing to hold: the bill's own institution collects it, through its cash desk."""
    code = (await hospitals.get(bill.institution_id)).code
    return methods.Reserved(merchant_id=code, account=ledger.counter_cash(code))


async def _open(rt: Runtime, bill: BillRecord, cash: CashRecord) -> dict[str, str]:
    """What the mini-program (or kiosk) shows: where to pay, the bill's number and what is due."""
    if cash.launch:
        return dict(msgspec.json.decode(cash.launch))
    institution = await hospitals.get(bill.institution_id)
    before = bill.expires_at.astimezone(CHINA)
    launch = {
        "counter": f"请于{before:%H:%M}前到{institution.name}收费窗口，凭账单号缴纳现金部分",
        "institution": institution.name,
        "bill_no": bill.bill_no,
        "cash_fen": str(cash.amount_fen),
        "pay_before": before.isoformat(),
    }
    return await methods.store_launch(cash, launch)


async def _check(rt: Runtime, bill: BillRecord, cash: CashRecord, expired: bool) -> str:
    """No one to ask: the cashier's record completes it; at expiry the bill closes unpaid."""
    if not expired:
        return "awaiting the counter"
    ended = await cash_parts.end_unpaid(rt, bill.id, BillState.CLOSED, "expired unpaid", was=BillState.PAYING)
    return "closed" if ended else "ended meanwhile"


async def _refund(rt: Runtime, cash: CashRecord, refund: methods.RefundOrder) -> RefundStatus:
    """The cashier hands the cash back, with the hospital's own receipt for it: done when asked."""
    return RefundStatus(refund.out_refund_no, "SUCCEEDED")


METHOD = methods.CashMethod(reserve=_reserve, open=_open, check=_check, refund=_refund, query_refund=_refund)
methods.register(COUNTER, METHOD)


# -- the cashier's record ------------------------------------------------------------------


async def record(
    rt: Runtime, partner: Partner, bill_id: uuid.UUID, request: CounterPaymentCreate, *, again: bool = True
) -> CounterPaymentRead:
    """The hospital's system says its counter took the cash part: the bill is PAID, once. The
    receipt number is the record's key: the same receipt for the same bill answers the same."""
    await bills.partner_bill(partner, bill_id)
    assert partner.institution_code is not None  # partner_bill passed: the bill is its institution's
    try:
        async with DB.transaction():
            cash_id, messages = await _record_within(rt, partner, bill_id, request)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "receipt_once" or not again:
            raise
        # Another bill's record took this receipt a moment ago: asked again, it answers why not.
        return await record(rt, partner, bill_id, request, again=False)
    await outbox.send(rt.redis, messages)
    return await _answer(cash_id)


async def _record_within(
    rt: Runtime, partner: Partner, bill_id: uuid.UUID, request: CounterPaymentCreate
) -> tuple[int, list[int]]:
    bill = await locked_bill(bill_id)
    taken = (
        await CashPayment.select(
            CashPayment.id, CashPayment.bill_id, CashPayment.amount_fen, CashPayment.tender
        )
        .where(
            (CashPayment.merchant_id == partner.institution_code)
            & (CashPayment.receipt_no == request.receipt_no)
        )
        .first()
    )
    if taken is not None:
        if (taken["bill_id"], taken["amount_fen"], taken["tender"]) != (
            bill.id,
            request.amount_fen,
            request.tender,
        ):
            raise Conflict(
                "this receipt number was recorded for another payment",
                code="COUNTER_RECEIPT_USED",
                detail={"field": "receipt_no"},
            )
        return int(taken["id"]), []  # the same record again
    if bill.cash_method != COUNTER:
        raise Conflict(
            "this bill's cash part is not left for the counter",
            code="CASH_NOT_AT_COUNTER",
            detail={"state": bill.state, "cash_method": bill.cash_method},
        )
    if bill.state != BillState.PAYING:
        raise Conflict(f"the bill is {bill.state}", code="BILL_NOT_PAYABLE", detail={"state": bill.state})
    if bill.expires_at <= datetime.now(UTC):
        raise Conflict("the bill has expired: it closes unpaid", code="BILL_EXPIRED")
    cash = await records.cash_of(bill.id)  # stable while the bill is locked
    assert cash is not None and cash.method == COUNTER and cash.state == CashState.CREATED
    if request.amount_fen != cash.amount_fen:
        raise AppError(
            f"the cash part left for the counter is {cash.amount_fen} fen",
            code="COUNTER_AMOUNT_MISMATCH",
            status_code=422,
            detail={"field": "amount_fen", "cash_fen": cash.amount_fen},
        )
    await CashPayment.update(
        {
            CashPayment.receipt_no: request.receipt_no,
            CashPayment.tender: request.tender,
            CashPayment.recorded_by: partner.client_id,
        }
    ).where((CashPayment.id == cash.id) & (CashPayment.state == CashState.CREATED))
    outcome, messages = await cash_parts.complete_within(
        rt,
        cash.out_trade_no,
        amount_fen=cash.amount_fen,
        merchant_id=cash.merchant_id,
        transaction_id=request.receipt_no,
        paid_at=None,
    )
    if outcome != "paid":  # the bill is locked and its cash part open: anything else is a bug
        raise RuntimeError(f"bill {bill.id}: the counter's payment was {outcome}")
    log.info(
        "paid at the counter", bill_id=str(bill.id), tender=request.tender, receipt_no=request.receipt_no
    )
    return cash.id, messages


async def _answer(cash_id: int) -> CounterPaymentRead:
    row = await CashPayment.select().where(CashPayment.id == cash_id).first()
    assert row is not None
    cash = records.as_cash(row)
    bill = await records.bill(cash.bill_id)
    assert bill is not None and cash.receipt_no is not None and cash.tender is not None
    assert cash.paid_at is not None
    return CounterPaymentRead(
        bill_id=bill.id,
        bill_no=bill.bill_no,
        state=bill.state,
        out_trade_no=cash.out_trade_no,
        amount_fen=cash.amount_fen,
        receipt_no=cash.receipt_no,
        tender=cash.tender,
        paid_at=cash.paid_at,
    )
