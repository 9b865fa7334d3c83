"""Booking's background work: cancelled sessions' appointments cancelled and refunded, expiries of
holds made inside other transactions scheduled, no-shows marked, and the evening reminders.
Unpaid holds expire with their registration bills (billing's expiry job and sweeper)."""

from __future__ import annotations

import structlog

from backend.booking import attendance, cancellation, holds, places, reminders
from backend.platform.runtime import Runtime
from backend.platform.work import Cron, Job

log = structlog.get_logger(__name__)

# Loaded by every process that pays bills (the web app through the routes, workers through
# `workers.gather`): registration bills confirm or free their appointments wherever they end.
ORDER = holds.ORDER


async def _cancel_session(rt: Runtime, session_id: str) -> str:
    return await cancellation.cancel_session(rt, int(session_id))


CANCEL_SESSION = Job("booking_cancel_session", _cancel_session, key="session-cancel:{}".format, timeout=600)


async def sweep_booking(rt: Runtime) -> int:
    """Cancelled sessions whose appointments are not all cancelled yet (a job was lost); the
    waitlists of sessions that have begun, closed; cancelled appointments' refunds that a channel
    refused, asked for again (hourly)."""
    due = await cancellation.cancelled_with_live_appointments()
    for session_id in due:
        await CANCEL_SESSION.enqueue(rt, str(session_id), suffix=":sweep")  # see billing.jobs.sweep_bills
    closed = await places.close_started_waitlists()
    if closed:
        log.info("waitlists of started sessions closed", entries=closed)
    refused = await cancellation.unrefunded()
    for appointment_id in refused:
        await cancellation.refund_again(rt, appointment_id)
    return len(due) + len(refused)


async def mark_no_shows(rt: Runtime) -> int:
    return await attendance.mark_no_shows(rt)


async def remind_tomorrow(rt: Runtime) -> int:
    return await reminders.remind(rt)


JOBS = [
    places.SCHEDULE_EXPIRY,
    cancellation.CANCEL_SESSION,
    CANCEL_SESSION,
    Cron(sweep_booking, at={"second": {25}}),
    Cron(mark_no_shows, at={"minute": set(range(0, 60, 5)), "second": {40}}),
    # 18:00 in China, and each hour to 23:00 to catch up on a run a stopped worker missed.
    Cron(remind_tomorrow, at={"hour": {10, 11, 12, 13, 14, 15}, "minute": {0}, "second": {0}}, timeout=1800),
]
