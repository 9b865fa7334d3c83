"""Booking's invariants: each session's count of places equals the appointments holding one
(never above its capacity), and each appointment agrees with its registration bill."""

from __future__ import annotations

from backend.booking.tables import ClinicSession

# The bill states each appointment state may sit beside.
_AGREES = """
    (a.state = 'HELD' AND b.state IN ('CREATED', 'PAYING'))
 OR (a.state IN ('CONFIRMED', 'CHECKED_IN', 'NO_SHOW')
     AND b.state IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED'))
 OR (a.state = 'EXPIRED' AND b.state IN ('CLOSED', 'FAILED'))
 OR (a.state = 'CANCELLED' AND (b.state IN ('CLOSED', 'FAILED') OR EXISTS (
        SELECT 1 FROM bill_refund r WHERE r.bill_id = b.id AND r.requested_by = 'domain:booking'
        AND r.state IN ('REQUESTED', 'PROCESSING', 'SUCCEEDED', 'ATTENTION'))))
"""


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    # Only the sessions that count places or have appointments holding one are read (an index on
    # `booked > 0`): the check grows with the bookings, not with the catalogue.
    for row in await ClinicSession.raw(
        """
        WITH holding AS (
            SELECT session_id, count(*) AS n FROM appointment
            WHERE state IN ('HELD', 'CONFIRMED', 'CHECKED_IN', 'NO_SHOW') GROUP BY session_id
        ), counted AS (
            SELECT id FROM booking_session WHERE booked > 0 UNION SELECT session_id FROM holding
        )
        SELECT s.id, s.code, s.capacity, s.booked, coalesce(h.n, 0) AS holding
        FROM counted c JOIN booking_session s ON s.id = c.id LEFT JOIN holding h ON h.session_id = s.id
        WHERE s.booked <> coalesce(h.n, 0) OR s.booked > s.capacity
        """
    ):
        problems.append(
            f"session {row['id']} ({row['code']}): "
            f"counts {row['booked']} of {row['capacity']} places booked, "
            f"{row['holding']} appointments hold one"
        )
    for row in await ClinicSession.raw(
        f"""
        SELECT a.id, a.state, b.state AS bill_state, a.fee_fen, b.total_fen
        FROM appointment a JOIN bill b ON b.id = a.bill_id
        WHERE NOT ({_AGREES}) OR a.fee_fen <> b.total_fen
        """  # noqa: S608  # fixed text
    ):
        problems.append(
            f"appointment {row['id']} is {row['state']} for {row['fee_fen']} fen; "
            f"its bill is {row['bill_state']} for {row['total_fen']}"
        )
    for row in await ClinicSession.raw(
        """
        SELECT w.id, w.state, a.state AS appointment_state FROM booking_waitlist w
        LEFT JOIN appointment a ON a.id = w.appointment_id
        WHERE (w.state = 'OFFERED' AND a.state IS DISTINCT FROM 'HELD')
           OR (w.state = 'BOOKED'
               AND (a.state IS NULL OR a.state NOT IN ('CONFIRMED', 'CHECKED_IN', 'NO_SHOW', 'CANCELLED')))
           OR (w.appointment_id IS NOT NULL AND a.waitlist_id IS DISTINCT FROM w.id)
        """
    ):
        problems.append(
            f"waitlist entry {row['id']} is {row['state']}; its appointment {row['appointment_state']}"
        )
    for row in await ClinicSession.raw(
        """
        SELECT session_id, queue_no, count(*) AS n FROM appointment
        WHERE state IN ('CONFIRMED', 'CHECKED_IN', 'NO_SHOW') GROUP BY session_id, queue_no
        HAVING count(*) > 1 OR queue_no IS NULL
        """
    ):
        problems.append(f"session {row['session_id']}: queue number {row['queue_no']} given {row['n']} times")
    for row in await ClinicSession.raw(
        """
        SELECT b.id, b.state FROM bill b LEFT JOIN appointment a ON a.bill_id = b.id
        WHERE b.created_by = 'domain:booking' AND a.id IS NULL
        """
    ):
        problems.append(f"registration bill {row['id']} ({row['state']}) pays for no appointment")
    counts = {
        "sessions": await ClinicSession.count(),
        "appointments": (await ClinicSession.raw("SELECT count(*) AS n FROM appointment"))[0]["n"],
    }
    return problems, counts
