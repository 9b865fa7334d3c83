"""Repayment reminders and overdue lines, for one day in China.

A drawdown is reminded when it falls due in 7, 3 and 1 days, on the day, and when overdue by 1,
7 and 30 days: each (drawdown, milestone) once, because the notification it records is unique
per (user, template, subject, milestone), so a repeated run, or two workers at once, send
nothing twice. Drawdowns are read in batches by key, so a run's memory does not grow with their
number. Lines with something overdue are frozen; full repayment unfreezes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

import structlog

from backend.credit import lines
from backend.credit.tables import CreditLine, Drawdown
from backend.ecert import service as ecert
from backend.notify import service as notify
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

# Days until due -> milestone. Negative: days overdue.
MILESTONES = {
    7: "due-7",
    3: "due-3",
    1: "due-1",
    0: "due-0",
    -1: "overdue-1",
    -7: "overdue-7",
    -30: "overdue-30",
}


def today() -> date:
    return lines.china_today()


@dataclass
class Run:
    as_of: date
    drawdowns: int = 0
    sent: int = 0
    frozen: int = 0
    by_milestone: dict[str, int] = field(default_factory=dict)


async def run(rt: Runtime, as_of: date) -> Run:
    result = Run(as_of)
    batch = rt.settings.credit.remind_batch
    for days, milestone in MILESTONES.items():
        due = as_of + timedelta(days=days)
        after = uuid.UUID(int=0)
        while True:
            rows = await Drawdown.raw(
                """
                SELECT d.id, l.insured_id,
                       -- what repays it that day: the principal and the interest accrued (lines.py)
                       d.principal_fen
                         + greatest({} - d.due_date, 0) * (d.principal_fen * p.daily_interest_bp / 10000)
                         AS owed_fen
                FROM credit_drawdown d JOIN credit_line l ON l.id = d.line_id
                JOIN credit_product p ON p.id = l.product_id
                WHERE d.status = 'DISBURSED' AND d.due_date = {} AND d.id > {}
                ORDER BY d.id LIMIT {}
                """,
                as_of,
                due,
                after,
                batch,
            )
            if not rows:
                break
            after = rows[-1]["id"]
            sent = await _remind(rt, rows, milestone, due)
            result.drawdowns += len(rows)
            result.sent += sent
            result.by_milestone[milestone] = result.by_milestone.get(milestone, 0) + sent
    result.frozen = await _freeze_overdue(as_of)
    log.info(
        "repayment reminders",
        as_of=str(as_of),
        drawdowns=result.drawdowns,
        sent=result.sent,
        frozen=result.frozen,
    )
    return result


async def _remind(rt: Runtime, rows: list[dict[str, object]], milestone: str, due: date) -> int:
    """One batch in one transaction (two statements): a notification per user, those new sent after
    commit."""
    users = await ecert.users_of_many(sorted({int(str(row["insured_id"])) for row in rows}))
    template = "repayment_overdue" if milestone.startswith("overdue") else "repayment_due"
    notices = [
        notify.Notice(
            user_id,
            template,
            f"drawdown:{row['id']}",
            milestone,
            {"amount_fen": row["owed_fen"], "due_date": due.isoformat(), "drawdown_id": str(row["id"])},
        )
        for row in rows
        for user_id in users.get(int(str(row["insured_id"])), [])
    ]
    async with DB.transaction():
        messages = await notify.notify_many(notices)
    await outbox.send(rt.redis, messages)
    return len(messages)


async def _freeze_overdue(as_of: date) -> int:
    """No new drawdowns on a line while something on it is overdue; a line frozen with nothing
    overdue any more, on `as_of` nor today (a run for a past day must not thaw it), is active again."""
    async with DB.transaction():
        # The lines are locked first and checked again by a second statement, which sees any
        # repayment committed while it waited for them (a single UPDATE would decide on its first
        # view of the drawdowns and freeze a line just repaid).
        candidates = await CreditLine.raw(
            """
            SELECT id FROM credit_line l WHERE status = 'ACTIVE' AND EXISTS (
                SELECT 1 FROM credit_drawdown d
                WHERE d.line_id = l.id AND d.status = 'DISBURSED' AND d.due_date < {}
            ) ORDER BY id FOR UPDATE
            """,
            as_of,
        )
        frozen = await CreditLine.raw(
            """
            UPDATE credit_line l SET status = 'FROZEN', frozen_at = now()
            WHERE id = ANY({}) AND EXISTS (
                SELECT 1 FROM credit_drawdown d
                WHERE d.line_id = l.id AND d.status = 'DISBURSED' AND d.due_date < {}
            ) RETURNING id
            """,
            [row["id"] for row in candidates],
            as_of,
        )
        await CreditLine.raw(
            """
            UPDATE credit_line l SET status = 'ACTIVE', frozen_at = NULL
            WHERE status = 'FROZEN' AND NOT EXISTS (
                SELECT 1 FROM credit_drawdown d
                WHERE d.line_id = l.id AND d.status = 'DISBURSED' AND d.due_date < {}
            )
            """,
            max(as_of, today()),
        )
    return len(frozen)
