"""At the hospital: a terminal checks the patient in with the visit their QR code or face opened;
after a session ends, the confirmed appointments nobody checked in for are no-shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog

from backend.booking import views
from backend.booking.places import CHINA
from backend.booking.schemas import AppointmentRead, CheckIn
from backend.booking.tables import Appointment, AppointmentState, ClinicSession
from backend.ecert import service as ecert
from backend.hospitals import service as hospitals
from backend.oauth.service import Partner
from backend.platform.errors import Conflict, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def check_in(
    rt: Runtime, partner: Partner, appointment_id: uuid.UUID, request: CheckIn
) -> AppointmentRead:
    institution = await hospitals.of_partner(partner.institution_code)
    row = (
        await Appointment.select(
            Appointment.institution_id, Appointment.insured_id, Appointment.state, Appointment.session_id
        )
        .where(Appointment.id == appointment_id)
        .first()
    )
    if row is None or row["institution_id"] != institution.id:
        raise NotFound("no such appointment", code="APPOINTMENT_NOT_FOUND")
    _, insured_id = await ecert.visit_for_bill(request.visit_token, partner)
    if insured_id != row["insured_id"]:
        raise Conflict(
            "this visit is another patient's", code="CHECK_IN_WRONG_PATIENT", detail={"field": "visit_token"}
        )
    if row["state"] == AppointmentState.CHECKED_IN:
        return await views.read(rt, appointment_id)
    if row["state"] != AppointmentState.CONFIRMED:
        code = (
            "APPOINTMENT_NOT_PAID" if row["state"] == AppointmentState.HELD else "APPOINTMENT_NOT_CONFIRMED"
        )
        raise Conflict(f"the appointment is {row['state']}", code=code, detail={"state": row["state"]})
    session = (
        await ClinicSession.select(ClinicSession.day, ClinicSession.ends_at, ClinicSession.state)
        .where(ClinicSession.id == row["session_id"])
        .first()
    )
    assert session is not None
    if session["state"] != "OPEN":
        raise Conflict("the session was cancelled: the fee is being refunded", code="SESSION_CLOSED")
    now = datetime.now(UTC)
    if now.astimezone(CHINA).date() < session["day"]:
        raise Conflict("check in on the day of the appointment", code="CHECK_IN_NOT_OPEN")
    if now >= session["ends_at"]:
        raise Conflict("the session has ended", code="CHECK_IN_CLOSED")
    checked = await Appointment.raw(
        """
        UPDATE appointment a SET state = 'CHECKED_IN', checked_in_at = {}, updated_at = {}
        FROM booking_session s WHERE a.id = {} AND a.state = 'CONFIRMED' AND s.id = a.session_id
          AND s.state = 'OPEN' RETURNING a.id
        """,
        now,
        now,
        appointment_id,
    )
    if not checked:  # cancelled (or its session) a moment ago, or checked in by another terminal
        state = await Appointment.select(Appointment.state).where(Appointment.id == appointment_id).first()
        if state is None or state["state"] != AppointmentState.CHECKED_IN:
            raise Conflict("the appointment was cancelled a moment ago", code="APPOINTMENT_NOT_CONFIRMED")
    log.info("checked in", appointment_id=str(appointment_id), terminal=partner.client_id)
    return await views.read(rt, appointment_id)


async def mark_no_shows(rt: Runtime) -> int:
    """Cron: confirmed appointments of sessions that have ended, never checked in."""
    rows = await Appointment.raw(
        """
        UPDATE appointment a SET state = 'NO_SHOW', ended_at = now(), updated_at = now()
        FROM booking_session s
        WHERE s.id = a.session_id AND a.state = 'CONFIRMED' AND a.day <= {} AND s.ends_at < now()
          AND s.state = 'OPEN'
        RETURNING a.id
        """,
        datetime.now(UTC).astimezone(CHINA).date(),
    )
    if rows:
        log.info("no-shows marked", appointments=len(rows))
    return len(rows)
