"""How a cash part ends: it completes exactly once, whichever comes first: the collector's
notification, the query of `check`, or the close at expiry finding it paid. A bill whose
cash never arrives is closed (or failed) and its settled parts are reversed, year-to-date usage
included.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog

from backend.billing import methods, orders, policy, records
from backend.billing.parties import (
    locked_bill,
    notify_paid,
    parties_of,
    post_parts,
)
from backend.billing.records import BillRecord, as_cash
from backend.billing.tables import Bill, BillState, CashPayment, CashState
from backend.partners.channels import OrderStatus
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def complete_cash(
    rt: Runtime,
    out_trade_no: str,
    *,
    amount_fen: int,
    merchant_id: str | None,
    transaction_id: str | None,
    paid_at: datetime | None,
) -> str:
    """The collector says the cash part is paid: complete the bill, once. Returns what happened."""
    async with DB.transaction():
        outcome, messages = await complete_within(
            rt,
            out_trade_no,
            amount_fen=amount_fen,
            merchant_id=merchant_id,
            transaction_id=transaction_id,
            paid_at=paid_at,
        )
    await outbox.send(rt.redis, messages)
    return outcome


async def complete_within(
    rt: Runtime,
    out_trade_no: str,
    *,
    amount_fen: int,
    merchant_id: str | None,
    transaction_id: str | None,
    paid_at: datetime | None,
) -> tuple[str, list[int]]:
    """`complete_cash` inside the caller's transaction: (what happened, outbox ids to send after
    commit). The bill is the first row it locks."""
    order = (
        await CashPayment.select(CashPayment.bill_id).where(CashPayment.out_trade_no == out_trade_no).first()
    )
    if order is None:
        return "ignored: no such order", []
    bill = await locked_bill(order["bill_id"])
    row = await CashPayment.select().where(CashPayment.out_trade_no == out_trade_no).lock_rows().first()
    assert row is not None  # found above; a cash payment is never deleted
    cash = as_cash(row)
    # Set when the cash part opened (orders opened before that was recorded carry none).
    if cash.merchant_id is not None and merchant_id != cash.merchant_id:
        log.error("payment for another merchant", out_trade_no=out_trade_no, merchant_id=merchant_id)
        return f"ignored: merchant {merchant_id} is not ours", []
    if amount_fen != cash.amount_fen:
        log.error("paid amount differs from the order", out_trade_no=out_trade_no, paid=amount_fen)
        return f"ignored: paid {amount_fen} fen, the order is for {cash.amount_fen}", []
    if cash.state == CashState.PAID:
        return "already paid", []
    if cash.state != CashState.CREATED:
        log.error("a closed order was paid; refund it at the channel", out_trade_no=out_trade_no)
        return f"ignored: the order is {cash.state}; paid after it ended", []
    now = datetime.now(UTC)
    await CashPayment.update(
        {
            CashPayment.state: CashState.PAID,
            CashPayment.transaction_id: transaction_id,
            CashPayment.merchant_id: merchant_id,
            CashPayment.paid_at: paid_at or now,
        }
    ).where((CashPayment.id == cash.id) & (CashPayment.state == CashState.CREATED))
    completed = (
        await Bill.update({Bill.state: BillState.PAID, Bill.paid_at: now, Bill.updated_at: now})
        .where((Bill.id == bill.id) & (Bill.state == BillState.PAYING))
        .returning(Bill.id)
    )
    if not completed:  # the cash row and the bill move together; anything else is a bug
        raise RuntimeError(f"bill {bill.id} is {bill.state} while its cash payment was open")
    parties = await parties_of(bill)
    messages = await notify_paid(bill, parties, now)
    messages += await orders.paid(rt, bill)
    await post_parts(
        "bill.cash_paid",
        f"bill:{bill.id}",
        bill,
        parties,
        cash_fen=cash.amount_fen,
        cash_account=cash.account,
    )
    log.info("bill paid", bill_id=str(bill.id), cash_fen=amount_fen)
    return "paid", messages


async def fail_within(out_trade_no: str, reason: str) -> bool:
    """The cash part could not be collected (a bank declined the disbursement); inside the
    caller's transaction. The bill stays settled and PAYING, with no cash method: the patient
    pays its cash part again, by any method. False when the cash part had already ended."""
    order = (
        await CashPayment.select(CashPayment.bill_id).where(CashPayment.out_trade_no == out_trade_no).first()
    )
    if order is None:
        return False
    bill = await locked_bill(order["bill_id"])
    now = datetime.now(UTC)
    failed = (
        await CashPayment.update({CashPayment.state: CashState.FAILED, CashPayment.ended_at: now})
        .where((CashPayment.out_trade_no == out_trade_no) & (CashPayment.state == CashState.CREATED))
        .returning(CashPayment.id)
    )
    if not failed:
        return False
    await Bill.update({Bill.cash_method: None, Bill.updated_at: now}).where(
        (Bill.id == bill.id) & (Bill.state == BillState.PAYING)
    )
    log.warning("cash part failed; the bill awaits another cash method", bill_id=str(bill.id), reason=reason)
    return True


async def end_unpaid(rt: Runtime, bill_id: uuid.UUID, state: str, reason: str, *, was: str) -> bool:
    """Close (or fail) a bill still in state `was` whose cash never came, reversing what was
    settled. False, changing nothing, when the bill has moved on (e.g. a payment started)."""
    async with DB.transaction():
        bill = await locked_bill(bill_id)
        if bill.state != was:
            return False
        messages = await end_within(rt, bill, state, reason)
    await outbox.send(rt.redis, messages)
    return True


async def end_within(rt: Runtime, bill: BillRecord, state: str, reason: str) -> list[int]:
    """`end_unpaid` inside the caller's transaction, the bill locked and CREATED or PAYING: the
    outbox ids to send after commit."""
    assert state in (BillState.CLOSED, BillState.FAILED)
    assert bill.state in (BillState.CREATED, BillState.PAYING)
    bill_id, now = bill.id, datetime.now(UTC)
    if bill.state == BillState.CREATED:
        await Bill.update(
            {Bill.state: state, Bill.ended_at: now, Bill.ended_reason: reason, Bill.updated_at: now}
        ).where((Bill.id == bill_id) & (Bill.state == BillState.CREATED))
        log.info("unpaid bill ended", bill_id=str(bill_id), state=state, reason=reason)
        return await orders.ended(rt, bill, reason)
    await CashPayment.update({CashPayment.state: state, CashPayment.ended_at: now}).where(
        (CashPayment.bill_id == bill_id) & (CashPayment.state == CashState.CREATED)
    )
    await Bill.update(
        {Bill.state: state, Bill.ended_at: now, Bill.ended_reason: reason, Bill.updated_at: now}
    ).where((Bill.id == bill_id) & (Bill.state == BillState.PAYING))
    # What the bill paid for first (a booking's place), the accounts last: the lock order of paying.
    messages = await orders.ended(rt, bill, reason)
    settled = bill.settled
    await policy.usage(bill.insured_id, settled.policy_year, lock=True)
    await post_parts(
        "bill.reversed",
        f"bill:{bill_id}",
        bill,
        await parties_of(bill),
        fund_fen=settled.fund_fen,
        personal_account_fen=settled.personal_account_fen,
        family_account_fen=settled.family_account_fen,
        family_insured_id=settled.family_insured_id,
        giving_back=True,
    )
    await policy.add_usage(bill.insured_id, settled.policy_year, -settled.deductible_fen, -settled.fund_fen)
    log.info("unpaid bill ended", bill_id=str(bill_id), state=state, reason=reason)
    return messages


async def apply_status(rt: Runtime, bill_id: uuid.UUID, status: OrderStatus, expired: bool) -> str:
    if status.state == "PAID":
        return await complete_cash(
            rt,
            status.out_trade_no,
            amount_fen=status.amount_fen or 0,
            merchant_id=status.merchant_id,
            transaction_id=status.transaction_id,
            paid_at=status.paid_at,
        )
    if status.state == "FAILED":
        await end_unpaid(
            rt, bill_id, BillState.FAILED, "the channel reported the payment failed", was=BillState.PAYING
        )
        return "failed"
    if status.state == "CLOSED" or (expired and status.state == "NOT_FOUND"):
        await end_unpaid(rt, bill_id, BillState.CLOSED, "expired unpaid", was=BillState.PAYING)
        return "closed"
    return "pending"


async def check(rt: Runtime, bill_id: uuid.UUID) -> str:
    """Job: ask the collector about a payment still in progress; complete, end, or look again later."""
    bill = await records.bill(bill_id)
    if bill is None or bill.state != BillState.PAYING:
        return "nothing to check"
    cash = await records.cash_of(bill_id)
    assert cash is not None  # a PAYING bill has a cash part
    expired = bill.expires_at <= datetime.now(UTC)
    if cash.state != CashState.CREATED:  # it failed; the patient may choose another method
        if not expired:
            return "awaiting another cash method"
        await end_unpaid(rt, bill_id, BillState.CLOSED, "expired unpaid", was=BillState.PAYING)
        return "closed"
    # Still pending: the sweeper asks again every minute until it ends or expires.
    return await methods.method(cash.method).check(rt, bill, cash, expired)


async def expire(rt: Runtime, bill_id: uuid.UUID) -> str:
    """Job at a bill's expiry: close it unpaid; a payment in progress is closed at the channel first."""
    bill = await records.bill(bill_id)
    if bill is None:
        return "no such bill"
    if bill.expires_at > datetime.now(UTC):
        return "not yet"
    if bill.state == BillState.CREATED and await end_unpaid(
        rt, bill_id, BillState.CLOSED, "expired unpaid", was=BillState.CREATED
    ):
        return "closed"
    # A payment started meanwhile (or had): the channel is asked before the bill is closed.
    now = await records.bill(bill_id)
    if now is not None and now.state == BillState.PAYING:
        return await check(rt, bill_id)
    return f"already {bill.state}"


async def overdue(check_after: timedelta, limit: int = 200) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """For the sweeper: (bills past expiry and unpaid, payments in progress for a while)."""
    now = datetime.now(UTC)
    expired = (
        await Bill.select(Bill.id)
        .where(Bill.state.is_in([BillState.CREATED, BillState.PAYING]) & (Bill.expires_at <= now))
        .limit(limit)
    )
    stale = (
        await Bill.select(Bill.id)
        .where(
            (Bill.state == BillState.PAYING) & (Bill.paying_at <= now - check_after) & (Bill.expires_at > now)
        )
        .limit(limit)
    )
    return [r["id"] for r in expired], [r["id"] for r in stale]
