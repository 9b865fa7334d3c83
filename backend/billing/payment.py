"""Paying a bill in one confirmation: pre-settlement, then settling the fund's and personal
account's parts in one transaction and opening the cash part with its method (`methods.py`: a
payment channel, or a credit line). How the cash part ends is `cash.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog

from backend.auth.service import Patient
from backend.billing import bills, jobs, methods, orders, policy, records
from backend.billing.methods import Reserved
from backend.billing.parties import (
    CHANNELS,
    Parties,
    locked_bill,
    notify_paid,
    parties_of,
    policy_year,
    post_parts,
)
from backend.billing.records import BillRecord
from backend.billing.schemas import (
    ItemSplitRead,
    PaymentRead,
    PayRequest,
    PolicyRead,
    PresettleRead,
    PresettleRequest,
)
from backend.billing.settlement import Item, Split, presettle
from backend.billing.tables import Bill, BillItem, BillState, CashPayment, CashState
from backend.ecert import service as ecert
from backend.ecert.service import InsuredPerson
from backend.family import service as family
from backend.ledger import service as ledger
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


def _method_problem(patient: Patient, method: str | None, cash_fen: int) -> AppError | None:
    if method is None:
        return AppError(
            f"{cash_fen} fen are left to pay in cash: choose a cash_method",
            code="CASH_METHOD_REQUIRED",
            status_code=422,
            detail={"field": "cash_method", "cash_fen": cash_fen},
        )
    if method not in methods.METHODS:
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


@dataclass(frozen=True)
class InPerson:
    """A payment consented to in person at a kiosk (by the patient's face), not on the payer's
    phone. `check` runs inside the settling transaction once the split is fixed, before anything
    is reserved: it refuses by raising (nothing is written) or records the consent, returning
    outbox ids. `via` (the kiosk) is kept in the bill's settlement. No payment is resumed in person."""

    via: str
    check: Callable[[BillRecord, Split], Awaitable[list[int]]]


async def pay(
    rt: Runtime, patient: Patient, bill_id: uuid.UUID, request: PayRequest, in_person: InPerson | None = None
) -> PaymentRead:
    own = await bills.owned_bill(patient, bill_id)
    started = await _settle(rt, patient, bill_id, own, request, in_person)
    if started is not None:
        return started
    # The payment in progress, launched again outside any transaction: the channel is never
    # called with the bill locked.
    bill = await records.bill(bill_id)
    assert bill is not None
    return await _launch(rt, bill)


async def _settle(
    rt: Runtime,
    patient: Patient,
    bill_id: uuid.UUID,
    own: bool,
    request: PayRequest,
    in_person: InPerson | None,
) -> PaymentRead | None:
    """Settle the bill (the patient's `own`, or a relative's) and open its cash part; None when
    this payment was already in progress."""
    messages: list[int] = []
    settled: BillRecord | None = None  # the bill as this payment left it, when it settled it
    async with DB.transaction():
        bill = await locked_bill(bill_id)
        if request.family_account and own:
            raise _aid_refused("family mutual aid pays for a relative's bill, not your own")
        if in_person is not None and bill.state == BillState.PAYING:
            raise Conflict(
                "a payment of this bill is in progress",
                code="BILL_PAYMENT_IN_PROGRESS",
                detail={"state": bill.state},
            )
        if bill.state == BillState.PAYING and bill.cash_method is None:
            await _reopen_cash(rt, patient, bill, own, request)  # its cash part failed: open another
        elif bill.state == BillState.PAYING:
            _check_resumable(patient, bill, request)
            return None
        else:
            messages, settled = await _settle_created(rt, patient, bill, own, request, in_person)
    await outbox.send(rt.redis, messages)
    return await _opened(rt, settled or await records.bill(bill_id))


async def _settle_created(
    rt: Runtime,
    patient: Patient,
    bill: BillRecord,
    own: bool,
    request: PayRequest,
    in_person: InPerson | None = None,
) -> tuple[list[int], BillRecord]:
    """Inside `_settle`'s transaction: the split settled, the cash part reserved and recorded;
    the outbox messages to send after commit, and the bill as it now stands."""
    messages: list[int] = []
    bill_id = bill.id
    if bill.state != BillState.CREATED:
        raise _not_payable(bill.state)
    if bill.expires_at <= datetime.now(UTC) + PAY_MARGIN:
        raise _expired()
    await orders.lock(bill)  # what the bill pays for (an appointment and its session) first
    # A relative's bill is paid under a live link, held until commit: one ended a moment ago
    # opens nothing, and one ended now waits for this payment.
    aid = await _family_aid(patient, bill, own, request.family_account, lock=True)
    year = policy_year()
    parties = await parties_of(bill)
    split, _, _ = await split_for(
        bill, parties, request.use_personal_account, year, lock=True, aid=aid.holder if aid else None
    )
    aided = aid is not None and split.family_account_fen > 0
    method = request.cash_method if split.cash_fen else None
    if split.cash_fen and (problem := _method_problem(patient, method, split.cash_fen)) is not None:
        raise problem
    if in_person is not None:  # before anything is reserved or written
        messages += await in_person.check(bill, split)
    out_trade_no = f"MP{bill_id.hex[:30]}"
    if method is not None:  # before anything is written: a refusal leaves the bill as it was
        reserved = await methods.method(method).reserve(
            rt, patient, bill, method, split.cash_fen, out_trade_no
        )
    await policy.add_usage(bill.insured_id, year, split.deductible_fen, split.fund_fen)
    now = datetime.now(UTC)
    state = BillState.PAYING if split.cash_fen else BillState.PAID
    rows = (
        await Bill.update(
            {
                Bill.state: state,
                Bill.fund_fen: split.fund_fen,
                Bill.personal_account_fen: split.personal_account_fen,
                Bill.family_account_fen: split.family_account_fen,
                Bill.family_insured_id: aid.holder.id if aid and aided else None,
                Bill.family_link_id: aid.link_id if aid and aided else None,
                Bill.family_link_version: aid.version if aid and aided else None,
                Bill.cash_fen: split.cash_fen,
                Bill.deductible_fen: split.deductible_fen,
                Bill.policy_year: year,
                Bill.settlement: msgspec.json.encode(
                    {
                        "use_personal_account": request.use_personal_account,
                        "family_account": request.family_account,
                        **({"kiosk": in_person.via} if in_person is not None else {}),
                        "items": [asdict(i) for i in split.items],
                    }
                ).decode(),
                Bill.cash_method: method,
                Bill.payer_user_id: patient.user_id,
                Bill.paying_at: now,
                Bill.paid_at: None if split.cash_fen else now,
                Bill.updated_at: now,
            }
        )
        .where((Bill.id == bill_id) & (Bill.state == BillState.CREATED))
        .returning(*Bill.all_columns())
    )
    if method is not None:
        await _insert_cash(bill_id, method, out_trade_no, split.cash_fen, reserved, now)
    else:
        messages += await notify_paid(bill, parties, now, patient.user_id)
        messages += await orders.paid(rt, bill)
    await post_parts(
        "bill.settled",
        f"bill:{bill_id}",
        bill,
        parties,
        fund_fen=split.fund_fen,
        personal_account_fen=split.personal_account_fen,
        family_account_fen=split.family_account_fen,
        family_insured_id=aid.holder.id if aid and aided else None,
    )
    return messages, records.as_bill(rows[0])


@dataclass(frozen=True)
class FamilyAid:
    """Family mutual aid for one payment: the link it is made under and the holder paying."""

    link_id: int
    version: int
    holder: InsuredPerson


def _aid_refused(why: str) -> AppError:
    return AppError(
        why, code="FAMILY_ACCOUNT_UNAVAILABLE", status_code=422, detail={"field": "family_account"}
    )


async def _family_aid(
    patient: Patient, bill: BillRecord, own: bool, wanted: bool, *, lock: bool
) -> FamilyAid | None:
    """Whether this payment of the bill (the patient's `own`, as `bills.owned_bill` found it, or a
    relative's) may use the payer's personal account for the relative whose bill it is (family
    mutual aid, 家庭共济); with `lock`, inside the paying transaction, the link is held until
    commit. A relative's bill with no live link is 404, as anyone else's is."""
    if own:
        if wanted:
            raise _aid_refused("family mutual aid pays for a relative's bill, not your own")
        return None
    acting = await family.acting_for(patient.user_id, bill.insured_id, lock=lock)
    if acting is None:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    if not wanted:
        return None
    if not acting.pay:
        raise _aid_refused("your link to this relative does not grant `pay` (family mutual aid)")
    holder = await ecert.insured_person(acting.holder_id)
    if holder.insurance_type != "employee":
        raise _aid_refused("only an employee's personal account pays for relatives")
    return FamilyAid(acting.link_id, acting.version, holder)


async def _opened(rt: Runtime, bill: BillRecord | None) -> PaymentRead:
    """After commit: the payment's answer, its cash part opened with its collector."""
    assert bill is not None
    log.info("bill settled", bill_id=str(bill.id), state=bill.state, cash_fen=bill.cash_fen)
    if not bill.cash_fen:
        return _payment_read(bill, None, None)
    await schedule_check(rt, bill.id, rt.settings.billing.payment_check_after_seconds)
    return await _launch(rt, bill)


async def _insert_cash(
    bill_id: uuid.UUID, method: str, out_trade_no: str, amount_fen: int, reserved: Reserved, now: datetime
) -> None:
    await CashPayment.insert(
        CashPayment(
            bill_id=bill_id,
            method=method,
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            state=CashState.CREATED,
            merchant_id=reserved.merchant_id,
            account=reserved.account,
            created_at=now,
        )
    )


async def _reopen_cash(
    rt: Runtime, patient: Patient, bill: BillRecord, own: bool, request: PayRequest
) -> None:
    """A bill whose cash part failed (a declined drawdown), paid again: the split stands, the cash
    part opens anew by the method now chosen, once `_settle`'s transaction (the bill locked) commits."""
    _check_resumable(patient, bill, request)
    await _family_aid(patient, bill, own, False, lock=True)  # a relative's bill: still under a live link
    settled = bill.settled
    method = request.cash_method
    if (problem := _method_problem(patient, method, settled.cash_fen)) is not None:
        raise problem
    assert method is not None
    attempts = await CashPayment.count().where(CashPayment.bill_id == bill.id)
    out_trade_no = f"MP{bill.id.hex[:27]}-{attempts:02d}"  # never a first attempt's, which has no "-"
    reserved = await methods.method(method).reserve(rt, patient, bill, method, settled.cash_fen, out_trade_no)
    now = datetime.now(UTC)
    await _insert_cash(bill.id, method, out_trade_no, settled.cash_fen, reserved, now)
    await Bill.update({Bill.cash_method: method, Bill.paying_at: now, Bill.updated_at: now}).where(
        (Bill.id == bill.id) & (Bill.state == BillState.PAYING) & Bill.cash_method.is_null()
    )


def _check_resumable(patient: Patient, bill: BillRecord, request: PayRequest) -> None:
    """A repeat of the payment in progress (a lost answer, a second device) gets the same launch."""
    if bill.expires_at <= datetime.now(UTC) + PAY_MARGIN:
        raise _expired()
    settled = msgspec.json.decode(bill.settled.settlement)
    same = (
        bill.settled.payer_user_id == patient.user_id
        and settled["use_personal_account"] == request.use_personal_account
        and settled.get("family_account", False) == request.family_account
        # With no cash method (its cash part failed), any method opens the cash part again.
        and (bill.cash_method is None or (request.cash_method or bill.cash_method) == bill.cash_method)
    )
    if not same:
        raise Conflict(
            "a different payment of this bill is in progress",
            code="BILL_PAYMENT_IN_PROGRESS",
            detail={"state": bill.state},
        )


async def payment_of(bill: BillRecord) -> PaymentRead:
    """A payment made before, as its first answer gave it (the launch it stored)."""
    cash = await records.cash_of(bill.id)
    launch = dict(msgspec.json.decode(cash.launch)) if cash is not None and cash.launch else None
    return _payment_read(bill, launch, cash.out_trade_no if cash is not None else None)


async def _launch(rt: Runtime, bill: BillRecord) -> PaymentRead:
    cash = await records.cash_of(bill.id)
    assert cash is not None
    launch = await methods.method(cash.method).open(rt, bill, cash)
    return _payment_read(bill, launch, cash.out_trade_no)


def _payment_read(bill: BillRecord, launch: dict[str, str] | None, out_trade_no: str | None) -> PaymentRead:
    return PaymentRead(
        out_trade_no=out_trade_no,
        bill_id=bill.id,
        state=bill.state,
        fund_fen=bill.settled.fund_fen,
        personal_account_fen=bill.settled.personal_account_fen,
        family_account_fen=bill.settled.family_account_fen,
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
    bill: BillRecord,
    parties: Parties,
    use_personal_account: bool,
    year: int,
    *,
    lock: bool,
    aid: InsuredPerson | None = None,
) -> tuple[Split, int, int | None]:
    """The bill's split under its person's policy and usage, with family mutual aid from `aid`'s
    personal account: (split, the person's personal account balance, `aid`'s balance).

    With `lock`, the usage and personal account rows stay locked until the caller commits, so
    concurrent payments of one person are settled one after another against fresh balances. The
    two personal accounts are locked together, in the ledger's order.
    """
    person, institution = parties.person, parties.institution
    rules = await policy.policy_for(person.region_code, person.insurance_type, year)
    usage = await policy.usage(bill.insured_id, year, lock=lock)
    accounts = ([person] if rules.personal_account_pays else []) + ([aid] if aid is not None else [])
    balances = await _balances(accounts, lock=lock)
    balance = balances.get(person.id, 0)
    aid_balance = None if aid is None else balances[aid.id]
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
        aid_balance or 0,
    )
    return split, balance, aid_balance


async def _balances(people: list[InsuredPerson], *, lock: bool) -> dict[int, int]:
    """The personal accounts' balances by insured person; with `lock`, opened if need be and
    locked until the caller commits."""
    if not lock:
        return {
            p.id: await ledger.balance(ledger.personal_account(p.id), default=p.opening_balance_fen)
            for p in people
        }
    return await ledger.locked_personal_accounts(
        [(p.id, policy.pooling_region(p.region_code), p.opening_balance_fen) for p in people]
    )


async def presettle_bill(patient: Patient, bill_id: uuid.UUID, request: PresettleRequest) -> PresettleRead:
    bill = await records.bill(bill_id)
    own = await bills.owned(patient, None if bill is None else bill.insured_id)
    assert bill is not None
    if bill.state != BillState.CREATED:
        raise AppError(
            f"the bill is {bill.state}; only an unpaid bill is pre-settled",
            code="BILL_NOT_PAYABLE",
            status_code=409,
            detail={"state": bill.state},
        )
    aid = await _family_aid(patient, bill, own, request.family_account, lock=False)
    parties = await parties_of(bill)
    split, balance, aid_balance = await split_for(
        bill,
        parties,
        request.use_personal_account,
        policy_year(),
        lock=False,
        aid=aid.holder if aid else None,
    )
    person = parties.person
    return PresettleRead(
        total_fen=split.total_fen,
        fund_fen=split.fund_fen,
        personal_account_fen=split.personal_account_fen,
        family_account_fen=split.family_account_fen,
        cash_fen=split.cash_fen,
        personal_account_balance_fen=balance,
        family_account_balance_fen=aid_balance,
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
