"""The waitlist (候补) of a full session: patients queue in order; a freed place is offered to the
first in line as a hold of their own (`places.offer_free_places`), and on to the next if it lapses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from backend.auth.service import Patient
from backend.booking import holds, places, views
from backend.booking.schemas import WaitlistRead
from backend.booking.tables import ClinicSession, WaitlistEntry, WaitlistState
from backend.ecert import service as ecert
from backend.piccolo_conf import DB
from backend.platform.errors import Conflict, NotFound
from backend.platform.runtime import Runtime


async def join(rt: Runtime, patient: Patient, session_id: int) -> tuple[bool, WaitlistRead]:
    """Queue for a full session: (joined now, the entry). Joining again answers the same entry."""
    insured_id = await views.own_insured(patient)
    where = await places.place(session_id)
    if where is None:
        raise NotFound("no such session", code="SESSION_NOT_FOUND")
    if (mine := await _live_entry(session_id, insured_id)) is not None:
        return False, await _read(mine)
    await holds.check_may_book(rt, insured_id, where.day)
    if await places.has_active(insured_id, where.doctor_id, where.day):
        raise places.duplicate()
    try:
        async with DB.transaction():
            # The session's row locked: no place is freed (and found nobody waiting) meanwhile.
            rows = await ClinicSession.raw(
                "SELECT state, capacity, booked, starts_at FROM booking_session WHERE id = {} FOR UPDATE",
                session_id,
            )
            session = rows[0]
            if (
                session["state"] != "OPEN"
                or session["starts_at"] <= datetime.now(UTC) + places.OFFER_AT_LEAST
            ):
                raise Conflict("the session is closed to booking", code="SESSION_CLOSED")
            if session["booked"] < session["capacity"]:
                raise Conflict(
                    "this session has places left: book one",
                    code="SESSION_NOT_FULL",
                    detail={"field": "session_id"},
                )
            inserted = await WaitlistEntry.insert(
                WaitlistEntry(
                    session_id=session_id,
                    insured_id=insured_id,
                    user_id=patient.user_id,
                    state=WaitlistState.WAITING,
                    created_at=datetime.now(UTC),
                )
            ).returning(WaitlistEntry.id)
    except asyncpg.UniqueViolationError:
        mine = await _live_entry(session_id, insured_id)  # the same patient joined a moment ago
        assert mine is not None
        return False, await _read(mine)
    return True, await _read(inserted[0]["id"])


async def _live_entry(session_id: int, insured_id: int) -> int | None:
    row = (
        await WaitlistEntry.select(WaitlistEntry.id)
        .where(
            (WaitlistEntry.session_id == session_id)
            & (WaitlistEntry.insured_id == insured_id)
            & WaitlistEntry.state.is_in([WaitlistState.WAITING, WaitlistState.OFFERED])
        )
        .first()
    )
    return None if row is None else int(row["id"])


async def _read(entry_id: int) -> WaitlistRead:
    rows = await WaitlistEntry.raw(
        """
        SELECT w.*, CASE WHEN w.state = 'WAITING' THEN (
            SELECT count(*) FROM booking_waitlist o
            WHERE o.session_id = w.session_id AND o.state = 'WAITING' AND o.id <= w.id) END AS position
        FROM booking_waitlist w WHERE w.id = {}
        """,
        entry_id,
    )
    return _as_read(rows[0])


def _as_read(row: dict[str, Any]) -> WaitlistRead:
    return WaitlistRead(
        id=row["id"],
        session_id=row["session_id"],
        state=row["state"],
        position=row["position"],
        appointment_id=row["appointment_id"],
        created_at=row["created_at"],
    )


async def _owned(patient: Patient, entry_id: int) -> None:
    row = await WaitlistEntry.select(WaitlistEntry.insured_id).where(WaitlistEntry.id == entry_id).first()
    if row is None or row["insured_id"] not in await ecert.insured_of_user(patient.user_id):
        raise NotFound("no such waitlist entry", code="WAITLIST_NOT_FOUND")


async def leave(patient: Patient, entry_id: int) -> WaitlistRead:
    """Give up a place in line while waiting; an offer made is cancelled as its appointment is."""
    await _owned(patient, entry_id)
    await WaitlistEntry.update(
        {WaitlistEntry.state: WaitlistState.LEFT, WaitlistEntry.ended_at: datetime.now(UTC)}
    ).where((WaitlistEntry.id == entry_id) & (WaitlistEntry.state == WaitlistState.WAITING))
    return await _read(entry_id)


async def mine(patient: Patient) -> list[WaitlistRead]:
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        return []
    rows = await WaitlistEntry.raw(
        """
        SELECT w.*, CASE WHEN w.state = 'WAITING' THEN (
            SELECT count(*) FROM booking_waitlist o
            WHERE o.session_id = w.session_id AND o.state = 'WAITING' AND o.id <= w.id) END AS position
        FROM booking_waitlist w WHERE w.insured_id = ANY({}::int[]) ORDER BY w.id DESC LIMIT 100
        """,
        insured,
    )
    return [_as_read(row) for row in rows]
