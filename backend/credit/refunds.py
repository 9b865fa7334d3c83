"""Refunds of credit-paid bills: the hospital gives the cash part back to the bank, which lowers
what is still owed and returns to the patient what was already repaid (`refund.posted`)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from backend.billing import refunds as bill_refunds
from backend.billing.methods import RefundOrder
from backend.billing.records import CashRecord
from backend.credit import drawdowns, lines
from backend.credit.banks import BankRecord
from backend.credit.schemas import RefundPosted
from backend.credit.tables import CreditRefund, Drawdown, DrawdownStatus
from backend.partners.bank import BankRefusal
from backend.partners.channels import RefundStatus
from backend.piccolo_conf import DB
from backend.platform.errors import AppError
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def refund(rt: Runtime, cash: CashRecord, refund: RefundOrder) -> RefundStatus:
    """The hospital gives the cash part back to the bank; it answers by `refund.posted`."""
    drawn = await drawdowns.drawn_by(out_trade_no=cash.out_trade_no)
    assert drawn is not None
    try:
        await rt.partners.bank.refund(
            drawn.bank.api_base,
            {"refund_id": refund.out_refund_no, "drawdown_id": str(drawn.id), "amount_fen": refund.cash_fen},
        )
    except BankRefusal as refusal:
        raise AppError(
            f"{drawn.bank.name} refused the refund",
            code="PARTNER_REJECTED",
            status_code=502,
            detail={"partner": "bank", "platform_code": refusal.code},
        ) from None
    return RefundStatus(refund.out_refund_no, "PROCESSING")


async def query_refund(rt: Runtime, cash: CashRecord, refund: RefundOrder) -> RefundStatus:
    drawn = await drawdowns.drawn_by(out_trade_no=cash.out_trade_no)
    assert drawn is not None
    posted = await rt.partners.bank.refund_status(drawn.bank.api_base, refund.out_refund_no)
    if posted is None:
        return RefundStatus(refund.out_refund_no, "NOT_FOUND")
    if posted.drawdown_id != str(drawn.id):
        log.error("the bank's refund is of another drawdown", out_refund_no=refund.out_refund_no)
        return RefundStatus(refund.out_refund_no, "PROCESSING")
    event = RefundPosted(
        refund_id=posted.refund_id,
        drawdown_id=drawn.id,
        amount_fen=posted.amount_fen,
        reduced_owed_fen=posted.reduced_owed_fen,
        returned_fen=posted.returned_fen,
        posted_at=datetime.now(UTC),
    )
    outcome = await post_refund(drawn.bank, event)
    return RefundStatus(refund.out_refund_no, "PROCESSING" if outcome.startswith("flagged") else "SUCCEEDED")


async def refund_posted(rt: Runtime, lender: BankRecord, event: RefundPosted) -> str:
    """The bank took the refund: the debt falls by what was still owed, then the bill's refund
    is confirmed (what had been repaid the bank returns to the patient itself)."""
    outcome = await post_refund(lender, event)
    if outcome.startswith("flagged"):
        return outcome
    confirmed = await bill_refunds.confirm(rt, event.refund_id)
    return f"{outcome}; bill refund {confirmed}"


async def post_refund(lender: BankRecord, event: RefundPosted) -> str:
    """The credit side of a refund, once: the drawdown, the line and the debt."""
    drawn = await drawdowns.drawn_by(drawdown_id=event.drawdown_id)
    if drawn is None or drawn.bank.id != lender.id:
        return "flagged: no such drawdown of this bank"
    if event.reduced_owed_fen + event.returned_fen != event.amount_fen:
        return "flagged: the refund's parts do not add up"
    asked = await bill_refunds.cash_refund(event.refund_id)
    if asked is None or asked != (drawn.bill_id, event.amount_fen):
        return "flagged: no refund of this drawdown's bill for that amount was asked for"
    async with DB.transaction():
        current = await Drawdown.select().where(Drawdown.id == drawn.id).lock_rows().first()
        assert current is not None
        if current["status"] not in (DrawdownStatus.DISBURSED, DrawdownStatus.REPAID):
            return f"flagged: a refund of a drawdown that is {current['status']}"
        if event.reduced_owed_fen > current["principal_fen"]:
            return (
                f"flagged: the refund takes {event.reduced_owed_fen} fen off {current['principal_fen']} owed"
            )
        recorded = (
            await CreditRefund.insert(
                CreditRefund(
                    out_refund_no=event.refund_id,
                    drawdown_id=drawn.id,
                    amount_fen=event.amount_fen,
                    reduced_owed_fen=event.reduced_owed_fen,
                    returned_fen=event.returned_fen,
                    posted_at=event.posted_at,
                )
            )
            .on_conflict(action="DO NOTHING")
            .returning(CreditRefund.id)
        )
        if not recorded:
            return "refund already posted"
        principal = current["principal_fen"] - event.reduced_owed_fen
        await Drawdown.update(
            {
                Drawdown.principal_fen: principal,
                Drawdown.refunded_fen: current["refunded_fen"] + event.reduced_owed_fen,
                Drawdown.status: DrawdownStatus.REPAID if principal == 0 else current["status"],
            }
        ).where(Drawdown.id == drawn.id)
        await lines.give_back(drawn.line_id, event.reduced_owed_fen)
        await lines.unfreeze_if_current(drawn.line_id, lines.china_today())
        await lines.post_debt(
            "credit.refunded",
            f"refund:{event.refund_id}",
            drawn.line_id,
            lender.code,
            -event.reduced_owed_fen,
        )
    return "refund posted"
