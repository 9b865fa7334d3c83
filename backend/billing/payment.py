"""Paying a bill in one confirmation: pre-settlement, then settling the fund's and personal
account's parts in one transaction and opening the cash part with its collector (a payment
channel; a credit line plugs in the same way). How the cash part ends is `cash.py`.
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
from backend.billing import bills, jobs, policy, records
from backend.billing.parties import (
    CHANNELS,
    Parties,
    locked_bill,
    notify_paid,
    parties_of,
    policy_year,
    post_parts,
)
from backend.billing.records import BillRecord, CashRecord
from backend.billing.schemas import (
    ItemSplitRead,
    PaymentRead,
    PayRequest,
    PolicyRead,
    PresettleRead,
)
from backend.billing.settlement import Item, Split, presettle
from backend.billing.tables import Bill, BillItem, BillState, CashPayment, CashState
from backend.hospitals import service as hospitals
from backend.ledger import service as ledger
from backend.partners.channels import OrderRequest
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

ORDER_TYPES = {"REG": "挂号", "DIAG": "门诊缴费", "PHARMACY": "药店购药", "IN_HOSP": "住院缴费"}


# -- cash collectors: how a cash part is opened -------------------------------------------------

CashCollector = Callable[[Runtime, BillRecord, CashRecord], Awaitable[dict[str, str]]]


async def _open_channel_order(rt: Runtime, bill: BillRecord, cash: CashRecord) -> dict[str, str]:
    """Create (or find again: out_trade_no is the channel's dedup key) the channel order."""
    if cash.launch:
        return dict(msgspec.json.decode(cash.launch))
    institution = await hospitals.get(bill.institution_id)
    order = OrderRequest(
        out_trade_no=cash.out_trade_no,
        payer_id=(await auth.channel_account(bill.settled.payer_user_id)).openid,
        description=f"{institution.name}-{ORDER_TYPES[bill.order_type]}",
        total_fen=bill.total_fen,
        cash_fen=cash.amount_fen,
        fund_fen=bill.settled.fund_fen,
        personal_account_fen=bill.settled.personal_account_fen,
        order_type=bill.order_type,
        institution_code=institution.code,
        institution_name=institution.name,
        notify_url=f"{rt.settings.app.base_url}/api/v1/payments/notify/{cash.method}",
        expires_at=bill.expires_at,
    )
    launch: dict[str, str] = await rt.partners.channel(cash.method).create_order(order)
    # Requests racing to open one order each get the channel's answer: the first one stored is
    # the launch every request of this payment answers with, now and later.
    stored = (
        await CashPayment.update({CashPayment.launch: launch})
        .where((CashPayment.id == cash.id) & CashPayment.launch.is_null())
        .returning(CashPayment.id)
    )
    if stored:
        return launch
    first = await CashPayment.select(CashPayment.launch).where(CashPayment.id == cash.id).first()
    assert first is not None
    return dict(msgspec.json.decode(first["launch"]))


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
    await bills.owned_bill(patient, bill_id)
    started = await _settle(rt, patient, bill_id, request)
    if started is not None:
        return started
    # The payment in progress, launched again outside any transaction: the channel is never
    # called with the bill locked.
    bill = await records.bill(bill_id)
    assert bill is not None
    return await _launch(rt, bill)


async def _settle(
    rt: Runtime, patient: Patient, bill_id: uuid.UUID, request: PayRequest
) -> PaymentRead | None:
    """Settle the bill and open its cash part; None when this payment was already in progress."""
    messages: list[int] = []
    async with DB.transaction():
        bill = await locked_bill(bill_id)
        if bill.state == BillState.PAYING:
            _check_resumable(patient, bill, request)
            return None
        if bill.state != BillState.CREATED:
            raise _not_payable(bill.state)
        if bill.expires_at <= datetime.now(UTC) + PAY_MARGIN:
            raise _expired()
        year = policy_year()
        parties = await parties_of(bill)
        split, _ = await split_for(bill, parties, request.use_personal_account, year, lock=True)
        method = request.cash_method if split.cash_fen else None
        if split.cash_fen and (problem := _method_problem(patient, method, split.cash_fen)) is not None:
            raise problem
        await policy.add_usage(bill.insured_id, year, split.deductible_fen, split.fund_fen)
        now = datetime.now(UTC)
        state = BillState.PAYING if split.cash_fen else BillState.PAID
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
        ).where((Bill.id == bill_id) & (Bill.state == BillState.CREATED))
        if split.cash_fen:
            assert method is not None
            await CashPayment.insert(
                CashPayment(
                    bill_id=bill_id,
                    method=method,
                    out_trade_no=f"MP{bill_id.hex[:30]}",
                    amount_fen=split.cash_fen,
                    state=CashState.CREATED,
                    created_at=now,
                )
            )
        else:
            messages += await notify_paid(bill, parties, now)
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
    settled = await records.bill(bill_id)
    assert settled is not None
    bill = settled
    log.info("bill settled", bill_id=str(bill_id), state=bill.state, cash_fen=bill.cash_fen)
    if not bill.cash_fen:
        return _payment_read(bill, None, None)
    await schedule_check(rt, bill_id, rt.settings.billing.payment_check_after_seconds)
    return await _launch(rt, bill)


def _check_resumable(patient: Patient, bill: BillRecord, request: PayRequest) -> None:
    """A repeat of the payment in progress (a lost answer, a second device) gets the same launch."""
    if bill.expires_at <= datetime.now(UTC) + PAY_MARGIN:
        raise _expired()
    settled = msgspec.json.decode(bill.settled.settlement)
    same = (
        bill.settled.payer_user_id == patient.user_id
        and settled["use_personal_account"] == request.use_personal_account
        and (request.cash_method or bill.cash_method) == bill.cash_method
    )
    if not same:
        raise Conflict(
            "a different payment of this bill is in progress",
            code="BILL_PAYMENT_IN_PROGRESS",
            detail={"state": bill.state},
        )


async def _launch(rt: Runtime, bill: BillRecord) -> PaymentRead:
    cash = await records.cash_of(bill.id)
    assert cash is not None
    launch = await CASH_COLLECTORS[cash.method](rt, bill, cash)
    return _payment_read(bill, launch, cash.out_trade_no)


def _payment_read(bill: BillRecord, launch: dict[str, str] | None, out_trade_no: str | None) -> PaymentRead:
    return PaymentRead(
        out_trade_no=out_trade_no,
        bill_id=bill.id,
        state=bill.state,
        fund_fen=bill.settled.fund_fen,
        personal_account_fen=bill.settled.personal_account_fen,
        cash_fen=bill.settled.cash_fen,
        cash_method=bill.cash_method,
        launch=launch,
    )


async def schedule_check(rt: Runtime, bill_id: uuid.UUID, after_seconds: float) -> None:
    """Ask the channel about the payment later; after that the sweeper asks each minute."""
    due = datetime.now(UTC) + timedelta(seconds=after_seconds)
    await jobs.CHECK_PAYMENT.enqueue(rt, str(bill_id), defer_until=due, suffix=f":{due:%Y%m%d%H%M%S}")


# -- pre-settlement ------------------------------------------------------------------------


async def split_for(
    bill: BillRecord, parties: Parties, use_personal_account: bool, year: int, *, lock: bool
) -> tuple[Split, int]:
    """The bill's split under its person's policy and usage: (split, personal account balance).

    With `lock`, the usage and personal account rows stay locked until the caller commits, so
    concurrent payments of one person are settled one after another against fresh balances.
    """
    person, institution = parties.person, parties.institution
    rules = await policy.policy_for(person.region_code, person.insurance_type, year)
    usage = await policy.usage(bill.insured_id, year, lock=lock)
    balance = 0
    if rules.personal_account_pays:
        code = ledger.personal_account(bill.insured_id)
        if lock:
            await ledger.open_personal_account(
                bill.insured_id,
                policy.pooling_region(person.region_code),
                person.opening_balance_fen,
            )
            balance = await ledger.locked_balance(code)
        else:
            balance = await ledger.balance(code, default=person.opening_balance_fen)
    items = (
        await BillItem.select(
            BillItem.code, BillItem.name, BillItem.category, BillItem.quantity, BillItem.unit_price_fen
        )
        .where(BillItem.bill_id == bill.id)
        .order_by(BillItem.line_no)
    )
    split = presettle(
        rules,
        institution.level,
        usage,
        [Item(**item) for item in items],
        balance if use_personal_account else 0,
    )
    return split, balance


async def presettle_bill(patient: Patient, bill_id: uuid.UUID, use_personal_account: bool) -> PresettleRead:
    await bills.owned_bill(patient, bill_id)
    bill = await records.bill(bill_id)
    assert bill is not None
    if bill.state != BillState.CREATED:
        raise AppError(
            f"the bill is {bill.state}; only an unpaid bill is pre-settled",
            code="BILL_NOT_PAYABLE",
            status_code=409,
            detail={"state": bill.state},
        )
    parties = await parties_of(bill)
    split, balance = await split_for(bill, parties, use_personal_account, policy_year(), lock=False)
    person = parties.person
    return PresettleRead(
        total_fen=split.total_fen,
        fund_fen=split.fund_fen,
        personal_account_fen=split.personal_account_fen,
        cash_fen=split.cash_fen,
        personal_account_balance_fen=balance,
        policy=PolicyRead(
            region_code=policy.pooling_region(person.region_code),
            insurance_type=person.insurance_type,
            year=policy_year(),
        ),
        items=[item_split_read(s) for s in split.items],
    )


def item_split_read(split: Any) -> ItemSplitRead:
    fields = asdict(split)
    return ItemSplitRead(**fields)
