"""Paying a bill in one confirmation, and every way a payment ends.

`pay` settles the fund's and personal account's parts in one transaction and opens the cash
part with its collector (a payment channel; a credit line plugs in the same way). The cash part
completes exactly once, whichever comes first: the channel's notification, the order query of
`check`, or the close at expiry finding it paid. A bill whose cash never arrives is closed (or
failed) and its settled parts are reversed, year-to-date usage included.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog

from backend.auth import service as auth
from backend.auth.service import Patient
from backend.billing import jobs, policy
from backend.billing.schemas import PaymentRead, PayRequest
from backend.billing.service import (
    Parties,
    notify_patients,
    owned_bill,
    parties_of,
    policy_year,
    post_parts,
    split_for,
)
from backend.billing.tables import Bill, CashPayment
from backend.hospitals import service as hospitals
from backend.partners.channels import OrderRequest, OrderStatus
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

CHANNELS = ("wechat", "alipay")
ORDER_TYPES = {"REG": "挂号", "DIAG": "门诊缴费", "PHARMACY": "药店购药", "IN_HOSP": "住院缴费"}


# -- cash collectors: how a cash part is opened -------------------------------------------------

CashCollector = Callable[[Runtime, dict[str, Any], dict[str, Any]], Awaitable[dict[str, str]]]


async def _open_channel_order(rt: Runtime, bill: dict[str, Any], cash: dict[str, Any]) -> dict[str, str]:
    """Create (or find again: out_trade_no is the channel's dedup key) the channel order."""
    if cash["launch"]:
        return dict(msgspec.json.decode(cash["launch"]))
    institution = await hospitals.get(bill["institution_id"])
    order = OrderRequest(
        out_trade_no=cash["out_trade_no"],
        payer_id=(await auth.channel_account(bill["payer_user_id"])).openid,
        description=f"{institution.name}-{ORDER_TYPES[bill['order_type']]}",
        total_fen=bill["total_fen"],
        cash_fen=cash["amount_fen"],
        fund_fen=bill["fund_fen"],
        personal_account_fen=bill["personal_account_fen"],
        order_type=bill["order_type"],
        institution_code=institution.code,
        institution_name=institution.name,
        notify_url=f"{rt.settings.app.base_url}/api/v1/payments/notify/{cash['method']}",
        expires_at=bill["expires_at"],
    )
    launch: dict[str, str] = await rt.partners.channel(cash["method"]).create_order(order)
    await CashPayment.update({CashPayment.launch: launch}).where(CashPayment.id == cash["id"])
    return launch


# The credit issue registers "credit" here: a drawdown on the patient's line.
CASH_COLLECTORS: dict[str, CashCollector] = {
    "wechat": _open_channel_order,
    "alipay": _open_channel_order,
}


def _method_problem(patient: Patient, method: str | None, cash_fen: int) -> AppError | None:
    if method is None:
        return AppError(
            f"{cash_fen} fen are left to pay in cash: choose a cash_method",
            code="CASH_METHOD_REQUIRED",
            status_code=422,
            detail={"field": "cash_method", "cash_fen": cash_fen},
        )
    if method not in CASH_COLLECTORS:
        return AppError(
            f"{method} payments are not available",
            code="CASH_METHOD_UNAVAILABLE",
            status_code=422,
            detail={"field": "cash_method"},
        )
    if method in CHANNELS and method != patient.channel:
        return AppError(
            f"a {patient.channel} mini-program cannot pay through {method}",
            code="CASH_METHOD_UNAVAILABLE",
            status_code=422,
            detail={"field": "cash_method"},
        )
    return None


# -- paying --------------------------------------------------------------------------------


# A payment is not started or resumed this close to the bill's expiry, when the channel order
# might be created after the expiry job closed the bill.
PAY_MARGIN = timedelta(seconds=60)


def _expired() -> Conflict:
    return Conflict(
        "the bill has expired or is about to; ask the hospital for a new one", code="BILL_EXPIRED"
    )


def _not_payable(state: str) -> Conflict:
    return Conflict(f"the bill is {state}", code="BILL_NOT_PAYABLE", detail={"state": state})


async def pay(rt: Runtime, patient: Patient, bill_id: uuid.UUID, request: PayRequest) -> PaymentRead:
    await owned_bill(patient, bill_id)
    started = await _settle(rt, patient, bill_id, request)
    if started is not None:
        return started
    # The payment in progress, launched again outside any transaction: the channel is never
    # called with the bill locked.
    bill = await Bill.select().where(Bill.id == bill_id).first()
    assert bill is not None
    return await _launch(rt, bill)


async def _settle(
    rt: Runtime, patient: Patient, bill_id: uuid.UUID, request: PayRequest
) -> PaymentRead | None:
    """Settle the bill and open its cash part; None when this payment was already in progress."""
    messages: list[int] = []
    async with DB.transaction():
        bill = await _locked_bill(bill_id)
        if bill["state"] == "PAYING":
            _check_resumable(patient, bill, request)
            return None
        if bill["state"] != "CREATED":
            raise _not_payable(bill["state"])
        if bill["expires_at"] <= datetime.now(UTC) + PAY_MARGIN:
            raise _expired()
        year = policy_year()
        parties = await parties_of(bill)
        split, _ = await split_for(bill, parties, request.use_personal_account, year, lock=True)
        method = request.cash_method if split.cash_fen else None
        if split.cash_fen and (problem := _method_problem(patient, method, split.cash_fen)) is not None:
            raise problem
        await policy.add_usage(bill["insured_id"], year, split.deductible_fen, split.fund_fen)
        now = datetime.now(UTC)
        state = "PAYING" if split.cash_fen else "PAID"
        await Bill.update(
            {
                Bill.state: state,
                Bill.fund_fen: split.fund_fen,
                Bill.personal_account_fen: split.personal_account_fen,
                Bill.cash_fen: split.cash_fen,
                Bill.deductible_fen: split.deductible_fen,
                Bill.policy_year: year,
                Bill.settlement: msgspec.json.encode(
                    {
                        "use_personal_account": request.use_personal_account,
                        "items": [asdict(i) for i in split.items],
                    }
                ).decode(),
                Bill.cash_method: method,
                Bill.payer_user_id: patient.user_id,
                Bill.paying_at: now,
                Bill.paid_at: None if split.cash_fen else now,
                Bill.updated_at: now,
            }
        ).where((Bill.id == bill_id) & (Bill.state == "CREATED"))
        if split.cash_fen:
            assert method is not None
            await CashPayment.insert(
                CashPayment(
                    bill_id=bill_id,
                    method=method,
                    out_trade_no=f"MP{bill_id.hex[:30]}",
                    amount_fen=split.cash_fen,
                    state="CREATED",
                    created_at=now,
                )
            )
        else:
            messages += await _notify_paid(bill, parties, now)
        # Last: the shared accounts (the fund pool, the hospital's receivable) stay locked only
        # from here to the commit.
        await post_parts(
            "bill.settled",
            f"bill:{bill_id}",
            bill,
            parties,
            fund_fen=split.fund_fen,
            personal_account_fen=split.personal_account_fen,
        )
    await outbox.send(rt.redis, messages)
    settled = await Bill.select().where(Bill.id == bill_id).first()
    assert settled is not None
    bill = settled
    log.info("bill settled", bill_id=str(bill_id), state=bill["state"], cash_fen=bill["cash_fen"])
    if not bill["cash_fen"]:
        return _payment_read(bill, None, None)
    await schedule_check(rt, bill_id, rt.settings.billing.payment_check_after_seconds)
    return await _launch(rt, bill)


def _check_resumable(patient: Patient, bill: dict[str, Any], request: PayRequest) -> None:
    """A repeat of the payment in progress (a lost answer, a second device) gets the same launch."""
    if bill["expires_at"] <= datetime.now(UTC) + PAY_MARGIN:
        raise _expired()
    settled = msgspec.json.decode(bill["settlement"])
    same = (
        bill["payer_user_id"] == patient.user_id
        and settled["use_personal_account"] == request.use_personal_account
        and (request.cash_method or bill["cash_method"]) == bill["cash_method"]
    )
    if not same:
        raise Conflict(
            "a different payment of this bill is in progress",
            code="BILL_PAYMENT_IN_PROGRESS",
            detail={"state": bill["state"]},
        )


async def _launch(rt: Runtime, bill: dict[str, Any]) -> PaymentRead:
    cash = await CashPayment.select().where(CashPayment.bill_id == bill["id"]).first()
    assert cash is not None
    launch = await CASH_COLLECTORS[cash["method"]](rt, bill, cash)
    return _payment_read(bill, launch, cash["out_trade_no"])


def _payment_read(
    bill: dict[str, Any], launch: dict[str, str] | None, out_trade_no: str | None
) -> PaymentRead:
    return PaymentRead(
        out_trade_no=out_trade_no,
        bill_id=bill["id"],
        state=bill["state"],
        fund_fen=bill["fund_fen"],
        personal_account_fen=bill["personal_account_fen"],
        cash_fen=bill["cash_fen"],
        cash_method=bill["cash_method"],
        launch=launch,
    )


async def _locked_bill(bill_id: uuid.UUID) -> dict[str, Any]:
    rows = await Bill.raw("SELECT * FROM bill WHERE id = {} FOR UPDATE", bill_id)
    if not rows:
        raise AppError("no such bill", code="BILL_NOT_FOUND", status_code=404)
    row: dict[str, Any] = rows[0]
    return row


async def _notify_paid(bill: dict[str, Any], parties: Parties, at: datetime) -> list[int]:
    return await notify_patients(
        bill, parties, "payment_succeeded", "paid", at, amount_fen=bill["total_fen"], bill_no=bill["bill_no"]
    )


async def schedule_check(rt: Runtime, bill_id: uuid.UUID, after_seconds: float) -> None:
    """Ask the channel about the payment later; after that the sweeper asks each minute."""
    due = datetime.now(UTC) + timedelta(seconds=after_seconds)
    await jobs.CHECK_PAYMENT.enqueue(rt, str(bill_id), defer_until=due, suffix=f":{due:%Y%m%d%H%M%S}")


# -- how a cash part ends ------------------------------------------------------------------


async def complete_cash(
    rt: Runtime,
    out_trade_no: str,
    *,
    amount_fen: int,
    merchant_id: str | None,
    transaction_id: str | None,
    paid_at: datetime | None,
) -> str:
    """The channel says the cash part is paid: complete the bill, once. Returns what happened."""
    messages: list[int] = []
    order = (
        await CashPayment.select(CashPayment.bill_id).where(CashPayment.out_trade_no == out_trade_no).first()
    )
    if order is None:
        return "ignored: no such order"
    async with DB.transaction():
        bill = await _locked_bill(order["bill_id"])
        rows = await CashPayment.raw(
            "SELECT * FROM cash_payment WHERE out_trade_no = {} FOR UPDATE", out_trade_no
        )
        cash = rows[0]
        expected_merchant = (
            rt.partners.channel(cash["method"]).merchant_id if cash["method"] in CHANNELS else None
        )
        if merchant_id != expected_merchant:
            log.error("payment for another merchant", out_trade_no=out_trade_no, merchant_id=merchant_id)
            return f"ignored: merchant {merchant_id} is not ours"
        if amount_fen != cash["amount_fen"]:
            log.error("paid amount differs from the order", out_trade_no=out_trade_no, paid=amount_fen)
            return f"ignored: paid {amount_fen} fen, the order is for {cash['amount_fen']}"
        if cash["state"] == "PAID":
            return "already paid"
        if cash["state"] != "CREATED":
            log.error("a closed order was paid; refund it at the channel", out_trade_no=out_trade_no)
            return f"ignored: the order is {cash['state']}; paid after it ended"
        now = datetime.now(UTC)
        await CashPayment.update(
            {
                CashPayment.state: "PAID",
                CashPayment.transaction_id: transaction_id,
                CashPayment.merchant_id: merchant_id,
                CashPayment.paid_at: paid_at or now,
            }
        ).where((CashPayment.id == cash["id"]) & (CashPayment.state == "CREATED"))
        completed = (
            await Bill.update({Bill.state: "PAID", Bill.paid_at: now, Bill.updated_at: now})
            .where((Bill.id == bill["id"]) & (Bill.state == "PAYING"))
            .returning(Bill.id)
        )
        if not completed:  # the cash row and the bill move together; anything else is a bug
            raise RuntimeError(f"bill {bill['id']} is {bill['state']} while its cash payment was open")
        parties = await parties_of(bill)
        messages += await _notify_paid(bill, parties, now)
        await post_parts("bill.cash_paid", f"bill:{bill['id']}", bill, parties, cash_fen=cash["amount_fen"])
    await outbox.send(rt.redis, messages)
    log.info("bill paid", bill_id=str(cash["bill_id"]), cash_fen=cash["amount_fen"])
    return "paid"


async def end_unpaid(bill_id: uuid.UUID, state: str, reason: str, *, was: str) -> bool:
    """Close (or fail) a bill still in state `was` whose cash never came, reversing what was
    settled. False, changing nothing, when the bill has moved on (e.g. a payment started)."""
    assert state in ("CLOSED", "FAILED")
    now = datetime.now(UTC)
    async with DB.transaction():
        bill = await _locked_bill(bill_id)
        if bill["state"] != was:
            return False
        if bill["state"] == "CREATED":
            await Bill.update(
                {Bill.state: state, Bill.ended_at: now, Bill.ended_reason: reason, Bill.updated_at: now}
            ).where((Bill.id == bill_id) & (Bill.state == "CREATED"))
            log.info("unpaid bill ended", bill_id=str(bill_id), state=state, reason=reason)
            return True
        await CashPayment.update({CashPayment.state: state, CashPayment.ended_at: now}).where(
            (CashPayment.bill_id == bill_id) & (CashPayment.state == "CREATED")
        )
        await Bill.update(
            {Bill.state: state, Bill.ended_at: now, Bill.ended_reason: reason, Bill.updated_at: now}
        ).where((Bill.id == bill_id) & (Bill.state == "PAYING"))
        await policy.usage(bill["insured_id"], bill["policy_year"], lock=True)
        await post_parts(
            "bill.reversed",
            f"bill:{bill_id}",
            bill,
            await parties_of(bill),
            fund_fen=bill["fund_fen"],
            personal_account_fen=bill["personal_account_fen"],
            giving_back=True,
        )
        await policy.add_usage(
            bill["insured_id"], bill["policy_year"], -bill["deductible_fen"], -bill["fund_fen"]
        )
    log.info("unpaid bill ended", bill_id=str(bill_id), state=state, reason=reason)
    return True


async def _apply_status(rt: Runtime, bill_id: uuid.UUID, status: OrderStatus, expired: bool) -> str:
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
        await end_unpaid(bill_id, "FAILED", "the channel reported the payment failed", was="PAYING")
        return "failed"
    if status.state == "CLOSED" or (expired and status.state == "NOT_FOUND"):
        await end_unpaid(bill_id, "CLOSED", "expired unpaid", was="PAYING")
        return "closed"
    return "pending"


async def check(rt: Runtime, bill_id: uuid.UUID) -> str:
    """Job: ask the channel about a payment still in progress; complete, end, or look again later."""
    bill = await Bill.select().where(Bill.id == bill_id).first()
    if bill is None or bill["state"] != "PAYING":
        return "nothing to check"
    cash = await CashPayment.select().where(CashPayment.bill_id == bill_id).first()
    if cash is None or cash["method"] not in CHANNELS:
        return "not a channel payment"
    expired = bill["expires_at"] <= datetime.now(UTC)
    channel = rt.partners.channel(cash["method"])
    status = await (channel.close_order if expired else channel.query_order)(cash["out_trade_no"])
    # Still pending: the sweeper asks again every minute until it ends or expires.
    return await _apply_status(rt, bill_id, status, expired)


async def expire(rt: Runtime, bill_id: uuid.UUID) -> str:
    """Job at a bill's expiry: close it unpaid; a payment in progress is closed at the channel first."""
    bill = await Bill.select(Bill.state, Bill.expires_at).where(Bill.id == bill_id).first()
    if bill is None:
        return "no such bill"
    if bill["expires_at"] > datetime.now(UTC):
        return "not yet"
    if bill["state"] == "CREATED" and await end_unpaid(bill_id, "CLOSED", "expired unpaid", was="CREATED"):
        return "closed"
    # A payment started meanwhile (or had): the channel is asked before the bill is closed.
    if (await Bill.select(Bill.state).where(Bill.id == bill_id).first() or {}).get("state") == "PAYING":
        return await check(rt, bill_id)
    return f"already {bill['state']}"


async def overdue(check_after: timedelta, limit: int = 200) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """For the sweeper: (bills past expiry and unpaid, payments in progress for a while)."""
    now = datetime.now(UTC)
    expired = (
        await Bill.select(Bill.id)
        .where(Bill.state.is_in(["CREATED", "PAYING"]) & (Bill.expires_at <= now))
        .limit(limit)
    )
    stale = (
        await Bill.select(Bill.id)
        .where((Bill.state == "PAYING") & (Bill.paying_at <= now - check_after) & (Bill.expires_at > now))
        .limit(limit)
    )
    return [r["id"] for r in expired], [r["id"] for r in stale]
