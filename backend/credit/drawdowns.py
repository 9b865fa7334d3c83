"""Paying by credit: the cash part of a bill drawn on the patient's line (billing's "credit" cash
method, assembled in `method.py`).

The amount is reserved on the line by one guarded UPDATE inside the transaction that settles the
bill (`used_fen + amount <= limit_fen`), so no interleaving of payments takes a line over its
limit. After commit the bank is asked to pay the hospital; `drawdown.disbursed` completes the bill
once and starts the interest-free period, `drawdown.failed` releases the reservation and leaves
the bill to be paid another way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import structlog

from backend.auth.service import Patient
from backend.billing import cash as bill_cash
from backend.billing import methods, records
from backend.billing.methods import Reserved
from backend.billing.parties import CHINA, locked_bill
from backend.billing.records import BillRecord, CashRecord
from backend.billing.tables import BillState
from backend.credit import banks, lines
from backend.credit.banks import BankRecord
from backend.credit.schemas import DrawdownDisbursed, DrawdownFailed
from backend.credit.tables import CreditLine, Drawdown, DrawdownStatus, LineStatus
from backend.ecert import service as ecert
from backend.family import service as family
from backend.hospitals import service as hospitals
from backend.ledger import service as ledger
from backend.partners.bank import BankRefusal
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, PartnerUnavailable
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

# A drawdown the bank never heard of is given up this long after its bill expired.
NEVER_REACHED_AFTER = timedelta(minutes=5)


# -- reserving, inside the bill's settlement ---------------------------------------------------


async def reserve(
    rt: Runtime, patient: Patient, bill: BillRecord, method: str, cash_fen: int, out_trade_no: str
) -> Reserved:
    """The line with the most room takes the cash part, or the payment is refused as a whole.

    A relative's bill is drawn on the payer's own line, under a link whose `credit` grant caps
    what it draws a month (`_within_family_cap`); the relative's own line is theirs alone."""
    borrower, link_id, version = bill.insured_id, None, None
    if bill.insured_id not in await ecert.insured_of_user(patient.user_id):
        acting = await family.acting_for(patient.user_id, bill.insured_id)  # held since the bill's
        if acting is None or acting.credit_cap_fen is None:
            raise AppError(
                "a relative's bill is drawn on your own credit line only under a link granting `credit`",
                code="CASH_METHOD_UNAVAILABLE",
                status_code=422,
                detail={"field": "cash_method"},
            )
        await _within_family_cap(acting.link_id, acting.credit_cap_fen, cash_fen)
        borrower, link_id, version = acting.holder_id, acting.link_id, acting.version
    held = (
        await CreditLine.select(CreditLine.id, CreditLine.status, CreditLine.limit_fen, CreditLine.used_fen)
        .where(
            (CreditLine.insured_id == borrower)
            & CreditLine.status.is_in([LineStatus.ACTIVE, LineStatus.FROZEN])
            & (CreditLine.expires_on >= lines.china_today())
        )
        .order_by(CreditLine.applied_at)
    )
    active = [line for line in held if line["status"] == LineStatus.ACTIVE]
    if not active:
        if held:
            raise lines.frozen()
        raise Conflict(
            "no active credit line: apply for one, or pay another way",
            code="CREDIT_LINE_NOT_ACTIVE",
            detail={"field": "cash_method"},
        )
    for line in sorted(active, key=lambda row: row["used_fen"] - row["limit_fen"]):
        # The one guarded UPDATE that keeps a line within its limit, whoever pays at once.
        taken = await CreditLine.raw(
            """
            UPDATE credit_line SET used_fen = used_fen + {}
            WHERE id = {} AND status = 'ACTIVE' AND used_fen + {} <= limit_fen
            RETURNING bank_id
            """,
            cash_fen,
            line["id"],
            cash_fen,
        )
        if taken:
            await Drawdown.insert(
                Drawdown(
                    id=uuid.uuid4(),
                    line_id=line["id"],
                    bill_id=bill.id,
                    out_trade_no=out_trade_no,
                    amount_fen=cash_fen,
                    principal_fen=cash_fen,
                    status=DrawdownStatus.RESERVED,
                    family_link_id=link_id,
                    family_link_version=version,
                    created_at=datetime.now(UTC),
                )
            )
            lender = await banks.bank_by_id(taken[0]["bank_id"])
            return Reserved(merchant_id=lender.code, account=ledger.bank_credit(lender.code))
    available = max(line["limit_fen"] - line["used_fen"] for line in active)
    raise Conflict(
        f"the credit line has {available} fen available; this bill needs {cash_fen}",
        code="CREDIT_LIMIT_EXCEEDED",
        detail={"field": "cash_method", "available_fen": available, "cash_fen": cash_fen},
    )


async def _within_family_cap(link_id: int, cap_fen: int, cash_fen: int) -> None:
    """What a link's holder lends a relative on their line this month (in China's calendar),
    less what refunds took off, stays within the link's cap. The link is locked by the paying
    transaction (`family.acting_for`), so drawdowns under it are counted one after another."""
    month = lines.china_today().replace(day=1)
    start = datetime(month.year, month.month, 1, tzinfo=CHINA)
    rows = await Drawdown.raw(
        """
        SELECT coalesce(sum(amount_fen - refunded_fen), 0) AS spent FROM credit_drawdown
        WHERE family_link_id = {} AND status <> 'FAILED' AND created_at >= {}
        """,
        link_id,
        start,
    )
    left = max(0, cap_fen - int(rows[0]["spent"]))  # a cap lowered below this month's spending: 0
    if cash_fen > left:
        raise Conflict(
            f"{left} fen are left of this month's family credit cap; this bill needs {cash_fen}",
            code="FAMILY_CREDIT_CAP_EXCEEDED",
            detail={"field": "cash_method", "available_fen": left, "cash_fen": cash_fen},
        )


# -- asking the bank, after commit -------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A drawdown with what the bank is asked about it: its line's reference, the product's
    interest-free days, and the bank."""

    id: uuid.UUID
    line_id: uuid.UUID
    bill_id: uuid.UUID
    out_trade_no: str
    amount_fen: int
    status: str
    line_ref: str
    interest_free_days: int
    bank: BankRecord


async def drawn_by(out_trade_no: str | None = None, drawdown_id: uuid.UUID | None = None) -> Drawn | None:
    rows = await Drawdown.raw(
        """
        SELECT d.id, d.line_id, d.bill_id, d.out_trade_no, d.amount_fen, d.status,
               l.bank_line_ref AS line_ref, l.bank_id, p.interest_free_days
        FROM credit_drawdown d JOIN credit_line l ON l.id = d.line_id
        JOIN credit_product p ON p.id = l.product_id
        WHERE d.out_trade_no = {} OR d.id = {}
        """,
        out_trade_no,
        drawdown_id,
    )
    if not rows:
        return None
    row = rows[0]
    return Drawn(
        id=row["id"],
        line_id=row["line_id"],
        bill_id=row["bill_id"],
        out_trade_no=row["out_trade_no"],
        amount_fen=row["amount_fen"],
        status=row["status"],
        line_ref=row["line_ref"],
        interest_free_days=row["interest_free_days"],
        bank=await banks.bank_by_id(row["bank_id"]),
    )


async def _ask_to_disburse(rt: Runtime, bill: BillRecord, drawn: Drawn) -> None:
    institution = await hospitals.get(bill.institution_id)
    await rt.partners.bank.disburse(
        drawn.bank.api_base,
        {
            "drawdown_id": str(drawn.id),
            "line_ref": drawn.line_ref,
            "amount_fen": drawn.amount_fen,
            "payee": {"institution_code": institution.code, "institution_name": institution.name},
            "bill_no": bill.bill_no,
            "interest_free_days": drawn.interest_free_days,
        },
    )


async def open_collection(rt: Runtime, bill: BillRecord, cash: CashRecord) -> dict[str, str]:
    """Ask the bank to pay the hospital (again is harmless: the drawdown id is its key)."""
    if cash.launch:
        return dict(msgspec.json.decode(cash.launch))
    drawn = await drawn_by(out_trade_no=cash.out_trade_no)
    assert drawn is not None  # reserved with the cash part
    try:
        await _ask_to_disburse(rt, bill, drawn)
    except PartnerUnavailable:
        log.warning("disbursement request left for the payment check", drawdown_id=str(drawn.id))
    except BankRefusal as refusal:
        await _failed(rt, drawn, refusal.code)
        raise Conflict(
            f"{drawn.bank.name} declined to pay this bill by credit; pay it another way",
            code="CREDIT_DRAWDOWN_DECLINED",
            detail={"bank_code": refusal.code},
        ) from None
    launch = {"type": "credit", "drawdown_id": str(drawn.id), "bank": drawn.bank.name, "status": "DISBURSING"}
    return await methods.store_launch(cash, launch)


async def check(rt: Runtime, bill: BillRecord, cash: CashRecord, expired: bool) -> str:
    """A drawdown not yet answered by callback: the bank's disbursement query decides."""
    drawn = await drawn_by(out_trade_no=cash.out_trade_no)
    assert drawn is not None
    status = await rt.partners.bank.disbursement(drawn.bank.api_base, str(drawn.id))
    if status is None:  # our request never reached the bank
        if expired:
            # No request is sent after expiry; one sent just before has long had its answer by
            # then (timeouts and retries take seconds), so the bank will not pay it later.
            if datetime.now(UTC) < bill.expires_at + NEVER_REACHED_AFTER:
                return "pending"
            await _failed(rt, drawn, "expired before the bank was reached")
            await bill_cash.end_unpaid(rt, bill.id, BillState.CLOSED, "expired unpaid", was=BillState.PAYING)
            return "closed"
        try:
            await _ask_to_disburse(rt, bill, drawn)
        except BankRefusal as refusal:
            return await _failed(rt, drawn, refusal.code)
        return "asked again"
    if status.status == "FAILED":
        return await _failed(rt, drawn, status.reason or "declined")
    assert status.disbursement_ref is not None and status.disbursed_at is not None
    event = DrawdownDisbursed(
        drawdown_id=drawn.id,
        amount_fen=status.amount_fen,
        disbursement_ref=status.disbursement_ref,
        disbursed_at=status.disbursed_at,
        due_date=status.due_date,
    )
    return await disbursed(rt, drawn.bank, event)


# -- what the bank says ------------------------------------------------------------------------


async def disbursed(rt: Runtime, lender: BankRecord, event: DrawdownDisbursed) -> str:
    """The bank paid the hospital: the bill is PAID, once; the debt and its due date begin."""
    drawn = await drawn_by(drawdown_id=event.drawdown_id)
    if drawn is None or drawn.bank.id != lender.id:
        return "flagged: no such drawdown of this bank"
    messages: list[int] = []
    bill = await records.bill(drawn.bill_id)
    assert bill is not None
    hospital = await hospitals.get(bill.institution_id)
    async with DB.transaction():
        # The bill, then its drawdown, then the accounts: the order every money move takes.
        await locked_bill(drawn.bill_id)
        await Drawdown.select(Drawdown.id).where(Drawdown.id == drawn.id).lock_rows()
        outcome, messages = await bill_cash.complete_within(
            rt,
            drawn.out_trade_no,
            amount_fen=event.amount_fen,
            merchant_id=lender.code,
            transaction_id=event.disbursement_ref,
            paid_at=event.disbursed_at,
        )
        if outcome == "already paid":
            return "already disbursed"
        if outcome != "paid":
            return f"flagged: {outcome}"
        due = event.disbursed_at.astimezone(CHINA).date() + timedelta(days=drawn.interest_free_days)
        started = await Drawdown.raw(
            """
            UPDATE credit_drawdown SET status = 'DISBURSED', disbursed_at = {}, due_date = {},
                   disbursement_ref = {}
            WHERE id = {} AND status = 'RESERVED' RETURNING id
            """,
            event.disbursed_at,
            due,
            event.disbursement_ref,
            drawn.id,
        )
        if not started:  # the bill and its drawdown move together; anything else is a bug
            raise RuntimeError(f"drawdown {drawn.id} is {drawn.status} while its bill was being paid")
        await lines.post_debt(
            "credit.drawn", f"drawdown:{drawn.id}", drawn.line_id, lender.code, drawn.amount_fen
        )
        messages += await lines.tell_holder(
            drawn.line_id,
            "credit_paid",
            f"drawdown:{drawn.id}",
            "paid",
            hospital=hospital.name,
            amount_fen=drawn.amount_fen,
            due_date=due.isoformat(),
            drawdown_id=str(drawn.id),
        )
    await outbox.send(rt.redis, messages)
    if event.due_date is not None and event.due_date != due:
        log.warning("the bank's due date differs from ours", ours=str(due), bank=str(event.due_date))
    log.info("drawdown disbursed", drawdown_id=str(drawn.id), due_date=str(due))
    return "paid"


async def declined(rt: Runtime, lender: BankRecord, event: DrawdownFailed) -> str:
    drawn = await drawn_by(drawdown_id=event.drawdown_id)
    if drawn is None or drawn.bank.id != lender.id:
        return "flagged: no such drawdown of this bank"
    return await _failed(rt, drawn, event.reason)


async def _failed(rt: Runtime, drawn: Drawn, reason: str) -> str:
    """The bank will not pay: the reservation goes back to the line, the bill awaits another method."""
    messages: list[int] = []
    async with DB.transaction():
        await bill_cash.fail_within(drawn.out_trade_no, reason)  # the bill first, as every money move
        ended = await Drawdown.raw(
            "UPDATE credit_drawdown SET status = 'FAILED', principal_fen = 0, failure_reason = {} "
            "WHERE id = {} AND status = 'RESERVED' RETURNING id",
            reason[:100],
            drawn.id,
        )
        if not ended:
            return f"ignored: the drawdown is {drawn.status}"
        await lines.give_back(drawn.line_id, drawn.amount_fen)
        messages += await lines.tell_holder(
            drawn.line_id,
            "credit_payment_failed",
            f"drawdown:{drawn.id}",
            "failed",
            bank=drawn.bank.name,
            amount_fen=drawn.amount_fen,
            bill_id=str(drawn.bill_id),
        )
    await outbox.send(rt.redis, messages)
    log.warning("drawdown failed", drawdown_id=str(drawn.id), reason=reason)
    return "failed"
