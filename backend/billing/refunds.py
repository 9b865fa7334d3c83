"""Refunds of paid bills, whole or in part, asked for by the hospital's system.

A refund takes its share of each part of the bill (see `settlement.refund_parts`). The parts
are reserved when it is recorded (REQUESTED), so concurrent refunds never exceed the bill. When
there is cash to give back, the channel is asked over HTTP with our `out_refund_no`, which it
deduplicates; once it accepts, the ledger, the year's usage and the bill's state move in one
transaction. A refund the channel refuses is REJECTED and releases its reservation; one the
channel could not be asked about stays REQUESTED and the sweeper asks again. Cash taken at the
hospital's counter is handed back there: its method answers SUCCEEDED at once (`counter.py`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from backend.billing import bills, methods, orders, policy, records
from backend.billing.methods import RefundOrder
from backend.billing.parties import Parties, locked_bill, notify_patients, parties_of, post_parts
from backend.billing.records import BillRecord
from backend.billing.schemas import RefundCreate, RefundRead
from backend.billing.settlement import RefundParts, refund_parts
from backend.billing.tables import Bill, BillState, Refund, RefundState
from backend.oauth.service import Partner
from backend.partners.channels import RefundStatus
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, PartnerUnavailable
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

LIVE = (
    RefundState.REQUESTED,
    RefundState.PROCESSING,
    RefundState.SUCCEEDED,
    RefundState.ATTENTION,
)  # the refunds holding their parts


async def _remaining(bill: BillRecord) -> RefundParts:
    """What is left of each part of a paid bill after every live refund."""
    rows = await Refund.raw(
        """
        SELECT coalesce(sum(fund_fen), 0) AS fund, coalesce(sum(personal_account_fen), 0) AS pa,
               coalesce(sum(family_account_fen), 0) AS family,
               coalesce(sum(cash_fen), 0) AS cash, coalesce(sum(deductible_fen), 0) AS deductible
        FROM bill_refund WHERE bill_id = {} AND state = ANY({}::text[])
        """,
        bill.id,
        list(LIVE),
    )
    taken = rows[0]
    return RefundParts(
        fund_fen=bill.settled.fund_fen - taken["fund"],
        personal_account_fen=bill.settled.personal_account_fen - taken["pa"],
        family_account_fen=bill.settled.family_account_fen - taken["family"],
        cash_fen=bill.settled.cash_fen - taken["cash"],
        deductible_fen=bill.settled.deductible_fen - taken["deductible"],
    )


async def request_refund(
    rt: Runtime, partner: Partner, bill_id: uuid.UUID, request: RefundCreate, request_key: str | None = None
) -> RefundRead:
    await bills.partner_bill(partner, bill_id)
    if request_key is not None:
        # A repeat after a failure: the refund recorded then, asked of the channel again if need be.
        existing = (
            await Refund.select(Refund.id)
            .where((Refund.requested_by == partner.client_id) & (Refund.request_key == request_key))
            .first()
        )
        if existing is not None:
            await send(rt, existing["id"], raise_refusal=True)
            return await _answer(existing["id"])
    try:
        async with DB.transaction():
            bill = await locked_bill(bill_id)
            if bill.created_by.startswith(orders.DOMAIN):
                raise Conflict(
                    "this bill pays for what another part of medpay holds (an appointment's fee): "
                    "it is refunded by cancelling that",
                    code="BILL_NOT_REFUNDABLE",
                    detail={"state": bill.state, "created_by": bill.created_by.removeprefix(orders.DOMAIN)},
                )
            refund_id, cash_fen, messages = await record_within(
                bill, request.amount_fen, request.reason, partner.client_id, request_key
            )
    except asyncpg.UniqueViolationError as exc:
        if request_key is None or exc.constraint_name != "requested_once":
            raise
        # The same key's first request recorded it a moment ago: that refund is the answer.
        return await request_refund(rt, partner, bill_id, request, request_key)
    await outbox.send(rt.redis, messages)
    if cash_fen:
        await send(rt, refund_id, raise_refusal=True)
    return await _answer(refund_id)


async def record_within(
    bill: BillRecord, amount_fen: int | None, reason: str, requested_by: str, request_key: str | None
) -> tuple[uuid.UUID, int, list[int]]:
    """Record a refund of a paid bill (all that is left when `amount_fen` is None), inside the
    caller's transaction with the bill locked: (refund id, its cash part, outbox ids). With no cash
    to give back it is SUCCEEDED at once; otherwise `send` asks the collector after commit."""
    if bill.state not in (BillState.PAID, BillState.PARTIALLY_REFUNDED):
        raise Conflict(
            f"the bill is {bill.state}; only a paid bill is refunded",
            code="BILL_NOT_REFUNDABLE",
            detail={"state": bill.state},
        )
    remaining = await _remaining(bill)
    left = (
        remaining.fund_fen
        + remaining.personal_account_fen
        + remaining.family_account_fen
        + remaining.cash_fen
    )
    amount = amount_fen if amount_fen is not None else left
    if amount > left or amount == 0:
        raise AppError(
            f"{left} fen are left to refund on this bill",
            code="REFUND_EXCEEDS_REMAINING",
            status_code=422,
            detail={"field": "amount_fen", "refundable_fen": int(left)},
        )
    parts = refund_parts(amount, remaining, left)
    refund_id = uuid.uuid4()
    await Refund.insert(
        Refund(
            id=refund_id,
            bill_id=bill.id,
            out_refund_no=f"RF{refund_id.hex[:30]}",
            amount_fen=amount,
            fund_fen=parts.fund_fen,
            personal_account_fen=parts.personal_account_fen,
            family_account_fen=parts.family_account_fen,
            cash_fen=parts.cash_fen,
            deductible_fen=parts.deductible_fen,
            reason=reason,
            state=RefundState.REQUESTED,
            requested_by=requested_by,
            request_key=request_key,
            created_at=datetime.now(UTC),
        )
    )
    messages = [] if parts.cash_fen else await _accept(refund_id, RefundState.SUCCEEDED, None)
    log.info("refund recorded", bill_id=str(bill.id), refund_id=str(refund_id), amount_fen=amount)
    return refund_id, parts.cash_fen, messages


async def _answer(refund_id: uuid.UUID) -> RefundRead:
    """The refund, or the channel's refusal of it (409, with the channel's code)."""
    row = await Refund.select(Refund.state, Refund.error).where(Refund.id == refund_id).first()
    assert row is not None
    if row["state"] == RefundState.REJECTED:
        raise _refused({"platform_code": (row["error"] or "").split(":", 1)[0]})
    return await read(refund_id)


def _refused(detail: dict[str, Any]) -> Conflict:
    return Conflict(
        "the channel refused to refund this payment; nothing was refunded",
        code="REFUND_REJECTED",
        detail={k: v for k, v in detail.items() if k in ("platform_code", "platform_message")},
    )


async def read(refund_id: uuid.UUID) -> RefundRead:
    row = await Refund.select().where(Refund.id == refund_id).first()
    assert row is not None
    return bills.refund_read(row)


async def send(rt: Runtime, refund_id: uuid.UUID, *, raise_refusal: bool = False) -> str:
    """Ask the channel to give the cash back (again: `out_refund_no` makes repeats harmless)."""
    refund = await Refund.select().where(Refund.id == refund_id).first()
    if refund is None or refund["state"] != RefundState.REQUESTED:
        return "nothing to send"
    cash = await records.cash_of(refund["bill_id"])
    assert cash is not None
    try:
        status = await methods.method(cash.method).refund(rt, cash, _order(refund))
    except PartnerUnavailable:
        log.warning("refund left for the sweeper", refund_id=str(refund_id))
        return "deferred"
    except AppError as exc:
        if exc.code != "PARTNER_REJECTED":
            # An answer we cannot read or trust: the channel may have refunded. Ask again later
            # with the same out_refund_no, which the channel never refunds twice.
            log.error("refund answer unusable; left for the sweeper", refund_id=str(refund_id), code=exc.code)
            return "deferred"
        if not await _reject(refund_id, f"{exc.detail.get('platform_code', exc.code)}: {exc.message}"):
            return "already settled"  # another send got the channel's word first
        if raise_refusal:
            raise _refused(exc.detail) from exc
        return "rejected"
    return await apply_status(rt, refund_id, status)


async def apply_status(rt: Runtime, refund_id: uuid.UUID, status: RefundStatus) -> str:
    """The channel's word on a refund (its answer, its notification or a query)."""
    if status.state == "NOT_FOUND":
        return "unknown at the channel"
    if status.state == "FAILED":  # nothing was refunded
        if await _reject(refund_id, "CLOSED: the channel closed the refund"):
            return "rejected"
        closed = await _needs_attention(refund_id, "the channel closed the refund after accepting it")
        return "needs attention" if closed else "already settled"
    if status.state == "ABNORMAL":  # the money left the merchant, the payer's account refused it
        async with DB.transaction():
            await _accept(refund_id, RefundState.PROCESSING, status.refund_id)
            await _needs_attention(refund_id, "the channel could not pay it out to the payer")
        return "needs attention"
    messages: list[int] = []
    async with DB.transaction():
        messages += await _accept(refund_id, status.state, status.refund_id)
        if status.state == "SUCCEEDED":
            messages += await _succeeded(refund_id)
    await outbox.send(rt.redis, messages)
    return status.state.lower()


async def _reject(refund_id: uuid.UUID, error: str) -> bool:
    """REQUESTED -> REJECTED: nothing moved; the reserved parts are free again."""
    rejected = (
        await Refund.update({Refund.state: RefundState.REJECTED, Refund.error: error})
        .where((Refund.id == refund_id) & (Refund.state == RefundState.REQUESTED))
        .returning(Refund.id)
    )
    if rejected:
        log.warning("refund rejected", refund_id=str(refund_id), error=error)
    return bool(rejected)


async def _needs_attention(refund_id: uuid.UUID, why: str) -> bool:
    """PROCESSING -> ATTENTION: the channel accepted the refund but did not pay it out. Either it
    took the money from the merchant and the payer's account refused it (WeChat Pay's ABNORMAL,
    settled through the channel's abnormal-refund process, whose SUCCESS ends it here), or it
    closed the refund. The refund stands in the books until a person settles it."""
    flagged = (
        await Refund.update({Refund.state: RefundState.ATTENTION, Refund.error: why})
        .where((Refund.id == refund_id) & (Refund.state == RefundState.PROCESSING))
        .returning(Refund.id)
    )
    if flagged:
        log.error(
            "refund accepted but not paid out: settle it at the channel", refund_id=str(refund_id), why=why
        )
    return bool(flagged)


async def _accept(refund_id: uuid.UUID, state: str, channel_refund_id: str | None) -> list[int]:
    """REQUESTED -> PROCESSING or SUCCEEDED: post the refund to the ledger and the bill. Once."""
    now = datetime.now(UTC)
    rows = await Refund.raw(
        """
        UPDATE bill_refund SET state = {}, accepted_at = {}, channel_refund_id = {},
               succeeded_at = CASE WHEN {} = 'SUCCEEDED' THEN {}::timestamptz END
        WHERE id = {} AND state = 'REQUESTED' RETURNING *
        """,
        state,
        now,
        channel_refund_id,
        state,
        now,
        refund_id,
    )
    if not rows:
        return []
    refund = rows[0]
    bill = await locked_bill(refund["bill_id"])
    await policy.usage(bill.insured_id, bill.settled.policy_year, lock=True)  # before the accounts
    parties = await parties_of(bill)
    cash = await records.cash_of(bill.id) if refund["cash_fen"] else None
    await post_parts(
        "bill.refunded",
        f"refund:{refund_id}",
        bill,
        parties,
        fund_fen=refund["fund_fen"],
        personal_account_fen=refund["personal_account_fen"],
        family_account_fen=refund["family_account_fen"],
        family_insured_id=bill.settled.family_insured_id,
        cash_fen=refund["cash_fen"],
        cash_account=cash.account if cash is not None else None,
        giving_back=True,
    )
    await policy.add_usage(
        bill.insured_id, bill.settled.policy_year, -refund["deductible_fen"], -refund["fund_fen"]
    )
    refunded = bill.refunded_fen + refund["amount_fen"]
    await Bill.update(
        {
            Bill.refunded_fen: refunded,
            Bill.state: BillState.REFUNDED if refunded == bill.total_fen else BillState.PARTIALLY_REFUNDED,
            Bill.updated_at: now,
        }
    ).where((Bill.id == bill.id) & Bill.state.is_in([BillState.PAID, BillState.PARTIALLY_REFUNDED]))
    return await _notify_refunded(bill, parties, refund, now) if state == RefundState.SUCCEEDED else []


async def _succeeded(refund_id: uuid.UUID) -> list[int]:
    """PROCESSING (or ATTENTION) -> SUCCEEDED, and the patient hears of it."""
    now = datetime.now(UTC)
    rows = await Refund.raw(
        "UPDATE bill_refund SET state = 'SUCCEEDED', succeeded_at = {} "
        "WHERE id = {} AND state IN ('PROCESSING', 'ATTENTION') RETURNING *",
        now,
        refund_id,
    )
    if not rows:
        return []
    bill = await records.bill(rows[0]["bill_id"])
    assert bill is not None
    return await _notify_refunded(bill, await parties_of(bill), rows[0], now)


async def _notify_refunded(
    bill: BillRecord, parties: Parties, refund: dict[str, Any], at: datetime
) -> list[int]:
    return await notify_patients(
        bill,
        parties,
        "refund_succeeded",
        refund["out_refund_no"],
        at,
        amount_fen=refund["amount_fen"],
        reason=refund["reason"],
    )


async def check(rt: Runtime, refund_id: uuid.UUID) -> str:
    """Ask the channel about a refund it accepted but has not confirmed."""
    refund = await Refund.select().where(Refund.id == refund_id).first()
    if refund is None or refund["state"] not in (RefundState.PROCESSING, RefundState.ATTENTION):
        return "nothing to check"
    cash = await records.cash_of(refund["bill_id"])
    assert cash is not None
    status = await methods.method(cash.method).query_refund(rt, cash, _order(refund))
    return await apply_status(rt, refund_id, status)


def _order(refund: dict[str, Any]) -> RefundOrder:
    return RefundOrder(str(refund["id"]), refund["out_refund_no"], refund["cash_fen"], refund["reason"])


async def unfinished(older_than: timedelta, limit: int = 200) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """For the sweeper: (refunds never answered by the channel, refunds accepted but unconfirmed)."""
    cutoff = datetime.now(UTC) - older_than
    requested = (
        await Refund.select(Refund.id)
        .where((Refund.state == RefundState.REQUESTED) & (Refund.created_at <= cutoff))
        .order_by(Refund.created_at)
        .limit(limit)
    )
    processing = (
        await Refund.select(Refund.id)
        .where((Refund.state == RefundState.PROCESSING) & (Refund.accepted_at <= cutoff))
        .order_by(Refund.accepted_at)
        .limit(limit)
    )
    return [r["id"] for r in requested], [r["id"] for r in processing]


async def needing_attention(limit: int = 500) -> list[uuid.UUID]:
    """Refunds waiting for a person: asked about hourly, in case the channel has paid them out."""
    rows = (
        await Refund.select(Refund.id)
        .where(Refund.state == RefundState.ATTENTION)
        .order_by(Refund.accepted_at)
        .limit(limit)
    )
    return [r["id"] for r in rows]


async def confirm(rt: Runtime, out_refund_no: str) -> str:
    """The collector (a bank) confirms it took a refund back: it SUCCEEDED, once."""
    refund = await Refund.select(Refund.id).where(Refund.out_refund_no == out_refund_no).first()
    if refund is None:
        return "unknown"
    return await apply_status(rt, refund["id"], RefundStatus(out_refund_no, "SUCCEEDED"))


async def cash_refund(out_refund_no: str) -> tuple[uuid.UUID, int] | None:
    """(bill, cash part) of a refund asked of a collector and not refused: what a collector's word
    on it must match."""
    row = (
        await Refund.select(Refund.bill_id, Refund.cash_fen)
        .where((Refund.out_refund_no == out_refund_no) & (Refund.state != RefundState.REJECTED))
        .first()
    )
    return None if row is None else (row["bill_id"], int(row["cash_fen"]))
