"""Repaying a drawdown: by the patient at the bank's cashier, or by the bank's auto-debit on the
due date. The money goes to the bank, not through our merchant accounts (a platform collecting
a lender's repayments would be holding another party's funds); `repayment.posted` tells us what
was paid, principal and interest, and the line gets its room back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.credit import lines
from backend.credit.banks import BankRecord
from backend.credit.schemas import RepaymentCreate, RepaymentFailed, RepaymentPosted, RepaymentRead
from backend.credit.tables import (
    CreditLine,
    Drawdown,
    DrawdownStatus,
    Repayment,
    RepaymentStatus,
)
from backend.ecert import service as ecert
from backend.partners.bank import BankRefusal
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


class NotYet(Exception):
    """The event depends on something not applied yet (a repayment before its disbursement)."""


def _not_found() -> NotFound:
    return NotFound(
        "no such drawdown, or not yours", code="DRAWDOWN_NOT_FOUND", detail={"field": "drawdown_id"}
    )


async def _owned_drawdown(patient: Patient, drawdown_id: uuid.UUID | None) -> dict[str, Any]:
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        raise _not_found()
    query = Drawdown.select(Drawdown.id, Drawdown.status).where(
        Drawdown.line_id.is_in(CreditLine.select(CreditLine.id).where(CreditLine.insured_id.is_in(insured)))
    )
    if drawdown_id is not None:
        row = await query.where(Drawdown.id == drawdown_id).first()
    else:  # the one due first
        row = (
            await query.where(Drawdown.status == DrawdownStatus.DISBURSED)
            .order_by(Drawdown.due_date)
            .order_by(Drawdown.created_at)
            .first()
        )
    if row is None:
        raise _not_found()
    return row


async def start(rt: Runtime, patient: Patient, request: RepaymentCreate, request_key: str) -> RepaymentRead:
    """Hold the amount against what is owed, then open the bank's cashier for it."""
    existing = await Repayment.select(Repayment.id).where(
        (Repayment.user_id == patient.user_id) & (Repayment.request_key == request_key)
    )
    if existing:
        return await read(existing[0]["id"])
    drawdown = await _owned_drawdown(patient, request.drawdown_id)
    if drawdown["status"] != DrawdownStatus.DISBURSED:
        raise Conflict(
            f"the drawdown is {drawdown['status']}: nothing to repay",
            code="DRAWDOWN_NOT_REPAYABLE",
            detail={"field": "drawdown_id", "status": drawdown["status"]},
        )
    repayment_id = uuid.uuid4()
    try:
        async with DB.transaction():
            api_base = await _hold(drawdown["id"], request.amount_fen)
            await Repayment.insert(
                Repayment(
                    id=repayment_id,
                    drawdown_id=drawdown["id"],
                    user_id=patient.user_id,
                    source="patient",
                    channel=patient.channel,
                    amount_fen=request.amount_fen,
                    status=RepaymentStatus.AWAITING_PAYMENT,
                    bank_repayment_ref=f"RP{repayment_id.hex[:30]}",
                    request_key=request_key,
                    created_at=datetime.now(UTC),
                )
            )
    except asyncpg.UniqueViolationError:
        return await start(rt, patient, request, request_key)  # the same key's first request won
    try:
        started = await rt.partners.bank.repay(
            api_base,
            {
                "repayment_id": f"RP{repayment_id.hex[:30]}",
                "drawdown_id": str(drawdown["id"]),
                "amount_fen": request.amount_fen,
                "channel": patient.channel,
            },
        )
    except (BankRefusal, AppError, msgspec.ValidationError) as exc:
        # The hold goes; should the bank have opened its cashier all the same and the patient pay
        # there, its `repayment.posted` still applies (see `_record`).
        await _give_up(repayment_id, "the bank did not take the repayment")
        if isinstance(exc, AppError):
            raise
        if isinstance(exc, msgspec.ValidationError):
            raise AppError(
                f"the bank's answer does not read: {exc}",
                code="PARTNER_ANSWER_UNUSABLE",
                status_code=502,
                detail={"partner": "bank"},
            ) from None
        if exc.code == "AMOUNT_EXCEEDS_OWED":
            raise _exceeds(int(exc.body.get("owed_fen", 0))) from None
        raise AppError(
            "the bank refused the repayment",
            code="PARTNER_REJECTED",
            status_code=502,
            detail={"partner": "bank", "platform_code": exc.code},
        ) from None
    await Repayment.update({Repayment.cashier_url: started.cashier_url}).where(Repayment.id == repayment_id)
    log.info("repayment started", repayment_id=str(repayment_id), amount_fen=request.amount_fen)
    return await read(repayment_id)


async def _hold(drawdown_id: uuid.UUID, amount_fen: int) -> str:
    """Hold `amount_fen` against what is owed today (principal and interest accrued), by one
    guarded UPDATE: repayments started at once never add up to more than is owed. Returns the
    bank's API base."""
    rows = await Drawdown.raw(
        """
        SELECT d.principal_fen, d.due_date, d.repaying_fen, p.daily_interest_bp, b.api_base
        FROM credit_drawdown d JOIN credit_line l ON l.id = d.line_id
        JOIN credit_product p ON p.id = l.product_id JOIN bank b ON b.id = l.bank_id
        WHERE d.id = {}
        """,
        drawdown_id,
    )
    row = rows[0]
    interest = lines.accrued_interest(
        row["principal_fen"], row["due_date"], row["daily_interest_bp"], lines.china_today()
    )
    held = await Drawdown.raw(
        "UPDATE credit_drawdown SET repaying_fen = repaying_fen + {} "
        "WHERE id = {} AND status = 'DISBURSED' AND repaying_fen + {} <= principal_fen + {} RETURNING id",
        amount_fen,
        drawdown_id,
        amount_fen,
        interest,
    )
    if not held:
        owed = max(row["principal_fen"] + interest - row["repaying_fen"], 0)
        raise _exceeds(owed)
    return str(row["api_base"])


def _exceeds(owed_fen: int) -> AppError:
    return AppError(
        f"{owed_fen} fen are owed (less repayments under way): repay at most that",
        code="REPAYMENT_EXCEEDS_OWED",
        status_code=422,
        detail={"field": "amount_fen", "owed_fen": owed_fen},
    )


async def _give_up(repayment_id: uuid.UUID, why: str) -> bool:
    async with DB.transaction():
        rows = await Repayment.raw(
            "UPDATE credit_repayment SET status = 'FAILED' WHERE id = {} AND status = 'AWAITING_PAYMENT' "
            "RETURNING drawdown_id, amount_fen",
            repayment_id,
        )
        if not rows:
            return False
        await Drawdown.raw(
            "UPDATE credit_drawdown SET repaying_fen = repaying_fen - {} WHERE id = {}",
            rows[0]["amount_fen"],
            rows[0]["drawdown_id"],
        )
    log.info("repayment ended unpaid", repayment_id=str(repayment_id), why=why)
    return True


async def read(repayment_id: uuid.UUID) -> RepaymentRead:
    row = await Repayment.select().where(Repayment.id == repayment_id).first()
    assert row is not None
    return RepaymentRead(
        id=row["id"],
        drawdown_id=row["drawdown_id"],
        amount_fen=row["amount_fen"],
        status=row["status"],
        cashier_url=row["cashier_url"],
    )


# -- what the bank says ------------------------------------------------------------------------


async def posted(rt: Runtime, lender: BankRecord, event: RepaymentPosted) -> str:
    """Money reached the bank: the debt falls by the principal, interest is booked, once."""
    found = await Drawdown.raw(
        "SELECT d.line_id, l.bank_id, l.insured_id, p.daily_interest_bp FROM credit_drawdown d "
        "JOIN credit_line l ON l.id = d.line_id JOIN credit_product p ON p.id = l.product_id WHERE d.id = {}",
        event.drawdown_id,
    )
    if not found or found[0]["bank_id"] != lender.id:
        return "flagged: no such drawdown of this bank"
    if event.principal_fen + event.interest_fen != event.amount_fen:
        return "flagged: principal and interest do not add up to the amount"
    line_id = found[0]["line_id"]
    messages: list[int] = []
    async with DB.transaction():
        drawdown = await Drawdown.select().where(Drawdown.id == event.drawdown_id).lock_rows().first()
        assert drawdown is not None
        drawdown["daily_interest_bp"] = found[0]["daily_interest_bp"]
        if drawdown["status"] == DrawdownStatus.RESERVED:
            raise NotYet(f"drawdown {event.drawdown_id} is not disbursed yet")
        if drawdown["status"] == DrawdownStatus.FAILED:
            return "flagged: a repayment of a drawdown that failed"
        recorded, held = await _record(event, drawdown)
        if recorded is None:
            return "already posted"
        if recorded.startswith("flagged"):
            return recorded
        principal = drawdown["principal_fen"] - event.principal_fen
        await Drawdown.update(
            {
                Drawdown.principal_fen: principal,
                Drawdown.interest_fen: drawdown["interest_fen"] + event.interest_fen,
                Drawdown.repaid_fen: drawdown["repaid_fen"] + event.amount_fen,
                Drawdown.repaying_fen: max(drawdown["repaying_fen"] - held, 0),
                Drawdown.status: DrawdownStatus.REPAID if principal == 0 else DrawdownStatus.DISBURSED,
            }
        ).where(Drawdown.id == event.drawdown_id)
        await lines.give_back(line_id, event.principal_fen)
        await lines.unfreeze_if_current(line_id, lines.china_today())
        reference = f"repayment:{event.repayment_id}"
        if event.interest_fen:
            await lines.post_debt("credit.interest", reference, line_id, lender.code, event.interest_fen)
        await lines.post_debt("credit.repaid", reference, line_id, lender.code, -event.amount_fen)
        messages += await lines.tell_holder(
            line_id,
            "repayment_received",
            f"repayment:{event.repayment_id}",
            "posted",
            amount_fen=event.amount_fen,
            owed_fen=principal,
            drawdown_id=str(event.drawdown_id),
        )
    await outbox.send(rt.redis, messages)
    log.info("repayment posted", repayment_id=event.repayment_id, amount_fen=event.amount_fen)
    return "posted"


async def _record(event: RepaymentPosted, drawdown: dict[str, Any]) -> tuple[str | None, int]:
    """Mark the patient's repayment posted, or record the bank's own: (what happened, the amount
    that was held for it); None when it was posted before. A patient's repayment whose hold was
    given up (the bank's answer was lost, or the cashier left open too long) is posted all the same:
    the money reached the bank."""
    if event.principal_fen > drawdown["principal_fen"]:
        return f"flagged: {event.principal_fen} fen of principal repaid, {drawdown['principal_fen']} owed", 0
    if (problem := _interest_problem(event, drawdown)) is not None:
        return problem, 0
    if event.source == "patient":
        rows = await Repayment.raw(
            """
            WITH was AS (
                SELECT id, status FROM credit_repayment
                WHERE bank_repayment_ref = {} AND drawdown_id = {} AND amount_fen = {}
                  AND status IN ('AWAITING_PAYMENT', 'FAILED')
                FOR UPDATE
            )
            UPDATE credit_repayment r
            SET status = 'POSTED', principal_fen = {}, interest_fen = {}, posted_at = {}
            FROM was WHERE r.id = was.id
            RETURNING was.status AS was
            """,
            event.repayment_id,
            event.drawdown_id,
            event.amount_fen,
            event.principal_fen,
            event.interest_fen,
            event.posted_at,
        )
        if rows:
            return "recorded", event.amount_fen if rows[0]["was"] == RepaymentStatus.AWAITING_PAYMENT else 0
        return await _seen_before(event)
    rows = (
        await Repayment.insert(
            Repayment(
                id=uuid.uuid4(),
                drawdown_id=event.drawdown_id,
                source="auto_debit",
                amount_fen=event.amount_fen,
                principal_fen=event.principal_fen,
                interest_fen=event.interest_fen,
                status=RepaymentStatus.POSTED,
                bank_repayment_ref=event.repayment_id,
                created_at=datetime.now(UTC),
                posted_at=event.posted_at,
            )
        )
        .on_conflict(action="DO NOTHING")
        .returning(Repayment.id)
    )
    return ("recorded", 0) if rows else await _seen_before(event)


async def _seen_before(event: RepaymentPosted) -> tuple[str | None, int]:
    """The same repayment posted again changes nothing; the same id for anything else is flagged."""
    known = await Repayment.select(Repayment.drawdown_id, Repayment.amount_fen, Repayment.status).where(
        Repayment.bank_repayment_ref == event.repayment_id
    )
    if known and (known[0]["drawdown_id"], known[0]["amount_fen"], known[0]["status"]) == (
        event.drawdown_id,
        event.amount_fen,
        RepaymentStatus.POSTED,
    ):
        return None, 0
    return "flagged: no such repayment awaiting payment, or its id is used for another", 0


def _interest_problem(event: RepaymentPosted, drawdown: dict[str, Any]) -> str | None:
    """Interest only after the due date, and never more than the product's rate on the whole
    amount would have charged by the posting date."""
    if not event.interest_fen:
        return None
    rate = drawdown["daily_interest_bp"]
    ceiling = lines.accrued_interest(
        drawdown["amount_fen"], drawdown["due_date"], rate, lines.china_today(event.posted_at)
    )
    if drawdown["interest_fen"] + event.interest_fen > ceiling:
        allowed = ceiling - drawdown["interest_fen"]
        return f"flagged: {event.interest_fen} fen of interest where the terms allow {allowed} by then"
    return None


async def failed(rt: Runtime, lender: BankRecord, event: RepaymentFailed) -> str:
    repayment = await Repayment.raw(
        "SELECT r.id, l.bank_id FROM credit_repayment r JOIN credit_drawdown d ON d.id = r.drawdown_id "
        "JOIN credit_line l ON l.id = d.line_id WHERE r.bank_repayment_ref = {}",
        event.repayment_id,
    )
    if not repayment or repayment[0]["bank_id"] != lender.id:
        return "flagged: no such repayment at this bank"
    return "ended" if await _give_up(repayment[0]["id"], event.reason) else "already ended"


async def release_abandoned(older_than_seconds: int, limit: int = 500) -> int:
    """For the sweeper: repayments left at the bank's cashier this long give their hold back (a
    payment the patient makes there later still posts)."""
    rows = await Repayment.raw(
        "SELECT id FROM credit_repayment WHERE status = 'AWAITING_PAYMENT' "
        "AND created_at < now() - make_interval(secs => {}) ORDER BY created_at LIMIT {}",
        older_than_seconds,
        limit,
    )
    released = [row["id"] for row in rows if await _give_up(row["id"], "left unpaid at the cashier")]
    return len(released)
