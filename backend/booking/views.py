"""What a patient sees of their appointments, and whose they are: anyone else's is 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.auth.service import Patient
from backend.billing import service as billing
from backend.booking.places import CHINA
from backend.booking.schemas import AppointmentPage, AppointmentRead
from backend.booking.tables import Appointment, AppointmentState
from backend.ecert import service as ecert
from backend.family import service as family
from backend.platform.errors import NotFound
from backend.platform.runtime import Runtime

_SELECT = """
    SELECT a.*, s.period, s.starts_at AS session_starts_at, s.slot_minutes, h.name AS hospital,
           dep.name AS department, d.name AS doctor
    FROM appointment a
    JOIN booking_session s ON s.id = a.session_id
    JOIN booking_doctor d ON d.id = a.doctor_id
    JOIN booking_department dep ON dep.id = s.department_id
    JOIN institution h ON h.id = a.institution_id
"""


async def own_insured(patient: Patient) -> int:
    """The patient's own insured person: their bound e-certificate."""
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        raise NotFound("bind your e-certificate before booking", code="ECERT_NOT_BOUND")
    return insured[0]


async def booked_for(patient: Patient, relative_link_id: int | None) -> int:
    """Whom a booking is for: the patient, or the relative of their link granting `manage`."""
    if relative_link_id is None:
        return await own_insured(patient)
    relative = await family.managed_relative(patient.user_id, relative_link_id)
    if relative is None:
        raise NotFound(
            "no such relative in your care",
            code="FAMILY_LINK_NOT_FOUND",
            detail={"field": "relative_link_id"},
        )
    return relative


async def owned(patient: Patient, appointment_id: uuid.UUID) -> uuid.UUID:
    """The appointment's bill, if the patient may act on it; 404 otherwise."""
    row = (
        await Appointment.select(Appointment.insured_id, Appointment.bill_id)
        .where(Appointment.id == appointment_id)
        .first()
    )
    if row is None or row["insured_id"] not in await family.in_care_of(patient.user_id):
        raise NotFound("no such appointment", code="APPOINTMENT_NOT_FOUND")
    bill_id: uuid.UUID = row["bill_id"]
    return bill_id


def _read(rt: Runtime, row: dict[str, Any]) -> AppointmentRead:
    starts_at = row["session_starts_at"]
    if row["slot"] is not None and row["slot_minutes"]:
        starts_at += timedelta(minutes=row["slot_minutes"] * (row["slot"] - 1))
    return AppointmentRead(
        id=row["id"],
        state=row["state"],
        session_id=row["session_id"],
        hospital=row["hospital"],
        department=row["department"],
        doctor=row["doctor"],
        date=row["day"],
        period=row["period"],
        starts_at=starts_at.astimezone(CHINA),
        slot=row["slot"],
        queue_no=row["queue_no"],
        fee_fen=row["fee_fen"],
        bill_id=row["bill_id"],
        pay_url=billing.pay_url(rt, row["bill_id"]),
        expires_at=row["expires_at"] if row["state"] == AppointmentState.HELD else None,
        waitlist_id=row["waitlist_id"],
        created_at=row["created_at"],
        ended_reason=row["ended_reason"],
    )


async def read(rt: Runtime, appointment_id: uuid.UUID) -> AppointmentRead:
    rows = await Appointment.raw(_SELECT + " WHERE a.id = {}", appointment_id)
    return _read(rt, rows[0])


async def show(rt: Runtime, patient: Patient, appointment_id: uuid.UUID) -> AppointmentRead:
    await owned(patient, appointment_id)
    return await read(rt, appointment_id)


async def no_shows(rt: Runtime, insured_id: int) -> int:
    since = datetime.now(UTC).astimezone(CHINA).date() - timedelta(
        days=rt.settings.booking.no_show_window_days
    )
    count: int = await Appointment.count().where(
        (Appointment.insured_id == insured_id)
        & (Appointment.state == AppointmentState.NO_SHOW)
        & (Appointment.day >= since)
    )
    return count


async def list_for(rt: Runtime, patient: Patient, limit: int, before: datetime | None) -> AppointmentPage:
    """The appointments of the patient and of the relatives they manage, newest first, a page at a
    time (keyset on when they were made); the no-shows are the patient's own."""
    insured = await family.in_care_of(patient.user_id)
    if not insured:
        return AppointmentPage(items=[], next_before=None, no_shows=0, barred=False)
    rows = await Appointment.raw(
        _SELECT
        + " WHERE a.insured_id = ANY({}::int[]) AND a.created_at < {} ORDER BY a.created_at DESC LIMIT {}",
        insured,
        before or datetime.now(UTC) + timedelta(days=1),
        limit + 1,
    )
    page = [_read(rt, row) for row in rows[:limit]]
    own = await ecert.insured_of_user(patient.user_id)
    missed = await no_shows(rt, own[0]) if own else 0
    limit_no_shows = rt.settings.booking.no_show_limit
    return AppointmentPage(
        items=page,
        next_before=page[-1].created_at if len(rows) > limit else None,
        no_shows=missed,
        barred=bool(limit_no_shows) and missed >= limit_no_shows,
    )
