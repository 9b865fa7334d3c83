"""The evening before: every confirmed appointment of tomorrow (in China) is reminded once.
Claimed a batch at a time (`reminded_at`), so repeated runs and several workers remind nobody
twice; the notification is unique per (user, template, subject, milestone) besides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import structlog

from backend.booking.places import CHINA
from backend.booking.tables import Appointment
from backend.ecert import service as ecert
from backend.notify import service as notify
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

BATCH = 500


def tomorrow() -> date:
    return datetime.now(UTC).astimezone(CHINA).date() + timedelta(days=1)


async def remind(rt: Runtime, day: date | None = None) -> int:
    """Remind the confirmed appointments of `day` (tomorrow) not yet reminded; how many."""
    day = day or tomorrow()
    reminded = 0
    while True:
        async with DB.transaction():
            rows = await Appointment.raw(
                """
                UPDATE appointment a SET reminded_at = now()
                FROM booking_session s, booking_department dep
                WHERE a.id IN (SELECT id FROM appointment WHERE day = {} AND state = 'CONFIRMED'
                               AND reminded_at IS NULL ORDER BY id LIMIT {} FOR UPDATE SKIP LOCKED)
                  AND s.id = a.session_id AND dep.id = s.department_id AND s.state = 'OPEN'
                RETURNING a.id, a.insured_id, a.user_id, a.slot, s.starts_at, s.slot_minutes,
                          dep.name AS department
                """,
                day,
                BATCH,
            )
            if not rows:
                return reminded
            users = await ecert.users_of_many(sorted({r["insured_id"] for r in rows}))
            notices = [
                notify.Notice(
                    user_id,
                    "appointment_reminder",
                    f"appointment:{row['id']}",
                    "eve",
                    {
                        "appointment_id": str(row["id"]),
                        "department": row["department"],
                        "starts_at": _starts_at(row).astimezone(CHINA).isoformat(),
                    },
                )
                for row in rows
                # The patient's own accounts, and whoever booked for them (a relative managing theirs).
                for user_id in dict.fromkeys([*users.get(row["insured_id"], []), row["user_id"]])
            ]
            messages = await notify.notify_many(notices)
        await outbox.send(rt.redis, messages)
        reminded += len(rows)
        log.info("appointment reminders", day=str(day), batch=len(rows))


def _starts_at(row: dict[str, object]) -> datetime:
    starts_at = row["starts_at"]
    assert isinstance(starts_at, datetime)
    if row["slot"] is not None and isinstance(row["slot_minutes"], int) and isinstance(row["slot"], int):
        return starts_at + timedelta(minutes=row["slot_minutes"] * (row["slot"] - 1))
    return starts_at
