"""What credit's use cases share: today's date in China, interest, a line's used amount given
back, freezing and unfreezing, and posting a line's debt to the ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from backend.billing.parties import CHINA
from backend.credit.tables import CreditLine, DrawdownStatus, LineStatus
from backend.ecert import service as ecert
from backend.ledger import service as ledger
from backend.notify import service as notify
from backend.platform.errors import AppError


def china_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(CHINA).date()


def accrued_interest(principal_fen: int, due_date: date | None, daily_bp: int, today: date) -> int:
    """Interest from the due date to today on what is still owed, as the banks reckon it: each
    day overdue adds the daily rate on the principal, rounded down to the fen."""
    if due_date is None or today <= due_date or principal_fen <= 0:
        return 0
    return (today - due_date).days * (principal_fen * daily_bp // 10_000)


async def give_back(line_id: uuid.UUID, amount_fen: int) -> None:
    """Principal no longer owed (repaid, refunded, or a drawdown that failed) frees the line."""
    if amount_fen:
        await CreditLine.raw(
            "UPDATE credit_line SET used_fen = used_fen - {} WHERE id = {}", amount_fen, line_id
        )


async def unfreeze_if_current(line_id: uuid.UUID, today: date) -> bool:
    """A frozen line with nothing overdue any more is active again."""
    rows = await CreditLine.raw(
        """
        UPDATE credit_line SET status = 'ACTIVE', frozen_at = NULL
        WHERE id = {} AND status = 'FROZEN' AND NOT EXISTS (
            SELECT 1 FROM credit_drawdown d
            WHERE d.line_id = credit_line.id AND d.status = 'DISBURSED' AND d.due_date < {}
        )
        RETURNING id
        """,
        line_id,
        today,
    )
    return bool(rows)


async def post_debt(kind: str, reference: str, line_id: uuid.UUID, bank_code: str, owed_fen: int) -> None:
    """The line's holder owes the bank `owed_fen` more (or, negative, less)."""
    await ledger.post(
        kind,
        reference,
        [(ledger.credit_debt(str(line_id)), -owed_fen), (ledger.bank_lent(bank_code), owed_fen)],
    )


async def tell_holder(
    line_id: uuid.UUID, template: str, subject: str, milestone: str, **params: object
) -> list[int]:
    """Notify the users bound to the line's insured person, once per milestone: the outbox ids to
    send after commit."""
    line = await CreditLine.select(CreditLine.insured_id).where(CreditLine.id == line_id).first()
    assert line is not None
    messages = []
    for user_id in await ecert.users_of_insured(line["insured_id"]):
        message = await notify.notify(user_id, template, subject, milestone, dict(params))
        if message is not None:
            messages.append(message)
    return messages


def frozen() -> AppError:
    return AppError(
        "the credit line is frozen while a repayment is overdue; repay it, or pay another way",
        code="CREDIT_LINE_FROZEN",
        status_code=409,
        detail={"field": "cash_method"},
    )


LIVE = (LineStatus.APPLIED, LineStatus.ACTIVE, LineStatus.FROZEN)
OPEN_DRAWDOWNS = (DrawdownStatus.RESERVED, DrawdownStatus.DISBURSED)
