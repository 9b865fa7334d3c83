"""Appointments cancelled: by their patient (before the cut-off), or because the hospital
cancelled the session (停诊). A held place's bill is closed; a paid one is refunded in full. The
place goes back to the session, and from there to its waitlist."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from backend.auth.service import Patient
from backend.billing import service as billing
from backend.booking import places, views
from backend.booking.places import CHINA
from backend.booking.schemas import AppointmentRead
from backend.booking.tables import HOLDING, Appointment, AppointmentState, ClinicSession
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import Conflict
from backend.platform.runtime import Runtime
from backend.platform.work import Task

log = structlog.get_logger(__name__)

BY_PATIENT = "cancelled by the patient"


async def cancel(rt: Runtime, patient: Patient, appointment_id: uuid.UUID) -> AppointmentRead:
    """The patient cancels: a hold simply ends; a confirmed appointment, up to the cut-off before
    its session, is refunded. Cancelling again answers the cancelled appointment."""
    bill_id = await views.owned(patient, appointment_id)
    cutoff = timedelta(minutes=rt.settings.booking.cancel_cutoff_minutes)
    async with DB.transaction():
        bill = await billing.locked(bill_id)
        appointment = await _locked(appointment_id)
        if appointment["state"] == AppointmentState.CANCELLED:
            return await views.read(rt, appointment_id)
        if appointment["state"] == AppointmentState.HELD and bill.state != billing.BillState.CREATED:
            raise Conflict(
                "its fee is being paid; cancel once the payment has ended",
                code="APPOINTMENT_PAYMENT_IN_PROGRESS",
                detail={"state": appointment["state"]},
            )
        if appointment["state"] == AppointmentState.CONFIRMED:
            starts_at = await _starts_at(appointment["session_id"])
            if datetime.now(UTC) > starts_at - cutoff:
                raise Conflict(
                    f"appointments are cancelled online up to {cutoff.total_seconds() / 3600:g} hours "
                    "before the session; please contact the hospital",
                    code="APPOINTMENT_CANCEL_TOO_LATE",
                    detail={"cancel_until": (starts_at - cutoff).astimezone(CHINA).isoformat()},
                )
        elif appointment["state"] != AppointmentState.HELD:
            raise Conflict(
                f"the appointment is {appointment['state']}",
                code="APPOINTMENT_NOT_CANCELLABLE",
                detail={"state": appointment["state"]},
            )
        refund_id, messages = await _cancel_within(rt, bill, appointment, BY_PATIENT, tell="您已取消预约")
    await _after(rt, messages, refund_id)
    log.info("appointment cancelled", appointment_id=str(appointment_id), by="patient")
    return await views.read(rt, appointment_id)


async def _locked(appointment_id: uuid.UUID) -> dict[str, Any]:
    rows = await Appointment.raw("SELECT * FROM appointment WHERE id = {} FOR UPDATE", appointment_id)
    return dict(rows[0])


async def _starts_at(session_id: int) -> datetime:
    row = await ClinicSession.select(ClinicSession.starts_at).where(ClinicSession.id == session_id).first()
    assert row is not None
    starts_at: datetime = row["starts_at"]
    return starts_at


async def _cancel_within(
    rt: Runtime, bill: billing.BillRecord, appointment: dict[str, Any], reason: str, *, tell: str
) -> tuple[uuid.UUID | None, list[int]]:
    """Cancel an appointment holding a place (HELD with its bill CREATED, or paid), its bill
    locked: (the refund to send after commit, if any; outbox ids)."""
    now = datetime.now(UTC)
    was = appointment["state"]
    await Appointment.update(
        {
            Appointment.state: AppointmentState.CANCELLED,
            Appointment.ended_at: now,
            Appointment.ended_reason: reason,
            Appointment.updated_at: now,
        }
    ).where((Appointment.id == appointment["id"]) & (Appointment.state == was))
    if appointment["waitlist_id"] is not None:
        await places.end_entry(appointment["waitlist_id"], "CLOSED")
    # The session's row before the refund's accounts: the lock order of paying.
    messages = await places.release(rt, appointment["session_id"])
    refund_id = None
    if was == AppointmentState.HELD:
        messages += await billing.close_within(rt, bill, f"the appointment was {reason}")
    elif bill.state in (billing.BillState.PAID, billing.BillState.PARTIALLY_REFUNDED):
        refund_id, cash_fen, refunded = await billing.refund_within(bill, reason, places.CREATOR)
        messages += refunded
        refund_id = refund_id if cash_fen else None
    if was != AppointmentState.HELD or reason != BY_PATIENT:  # the patient knows of their own
        where = await places.place(appointment["session_id"])
        assert where is not None
        messages += await places.tell(
            appointment["insured_id"],
            "appointment_cancelled",
            appointment["id"],
            "cancelled",
            where,
            reason=tell,
        )
    return refund_id, messages


async def _after(rt: Runtime, messages: list[int], refund_id: uuid.UUID | None) -> None:
    await outbox.send(rt.redis, messages)
    if refund_id is not None:
        await billing.send_refund(rt, refund_id)  # the refund sweeper asks again if this fails


# -- 停诊: a cancelled session -------------------------------------------------------------------


async def cancel_session(rt: Runtime, session_id: int) -> str:
    """Job: cancel every live appointment of a cancelled session, one transaction each. A hold
    whose fee is being paid is left to its payment: paid, it comes back here; unpaid, it expires."""
    session = (
        await ClinicSession.select(ClinicSession.state, ClinicSession.cancel_reason)
        .where(ClinicSession.id == session_id)
        .first()
    )
    if session is None or session["state"] != "CANCELLED":
        return "not cancelled"
    reason = session["cancel_reason"] or "医生停诊"
    live = await Appointment.select(Appointment.id, Appointment.bill_id).where(
        (Appointment.session_id == session_id) & Appointment.state.is_in(list(HOLDING))
    )
    cancelled = waiting = 0
    for row in live:  # every place held: whoever checked in or missed it is refunded too
        async with DB.transaction():
            bill = await billing.locked(row["bill_id"])
            appointment = await _locked(row["id"])
            state = appointment["state"]
            if state == AppointmentState.HELD and bill.state != billing.BillState.CREATED:
                waiting += 1
                continue
            if state not in HOLDING:
                continue
            refund_id, messages = await _cancel_within(
                rt, bill, appointment, "the session was cancelled", tell=reason
            )
        await _after(rt, messages, refund_id)
        cancelled += 1
    async with DB.transaction():
        await places.close_waitlist(session_id, "the session was cancelled")
    log.info("session cancelled", session_id=session_id, appointments=cancelled, paying=waiting)
    return f"{cancelled} cancelled, {waiting} being paid"


async def _cancel_session_task(rt: Runtime, payload: dict[str, Any]) -> None:
    await cancel_session(rt, int(payload["session_id"]))


# Written in the transaction that cancels a session (or pays a hold of one being cancelled).
CANCEL_SESSION = Task("booking.cancel_session", _cancel_session_task)


async def cancelled_with_live_appointments(limit: int = 100) -> list[int]:
    """For the sweeper: cancelled sessions some appointment still holds (a job was lost)."""
    rows = await ClinicSession.raw(
        """
        SELECT s.id FROM booking_session s WHERE s.state = 'CANCELLED' AND EXISTS (
            SELECT 1 FROM appointment a WHERE a.session_id = s.id
            AND a.state IN ('HELD', 'CONFIRMED', 'CHECKED_IN', 'NO_SHOW'))
        LIMIT {}
        """,
        limit,
    )
    return [int(r["id"]) for r in rows]


async def unrefunded(retry_after: timedelta = timedelta(hours=1), limit: int = 100) -> list[uuid.UUID]:
    """For the sweeper: cancelled appointments whose paid fee has no live refund, because the
    collector refused the last one (and not within `retry_after`)."""
    rows = await Appointment.raw(
        """
        SELECT a.id FROM appointment a JOIN bill b ON b.id = a.bill_id
        WHERE a.state = 'CANCELLED' AND b.state IN ('PAID', 'PARTIALLY_REFUNDED')
          AND NOT EXISTS (SELECT 1 FROM bill_refund r WHERE r.bill_id = b.id
                          AND (r.state <> 'REJECTED' OR r.created_at > {}))
        LIMIT {}
        """,
        datetime.now(UTC) - retry_after,
        limit,
    )
    return [row["id"] for row in rows]


async def refund_again(rt: Runtime, appointment_id: uuid.UUID) -> str:
    """Ask again for the refund of a cancelled appointment's fee that its collector refused."""
    row = await Appointment.select(Appointment.bill_id).where(Appointment.id == appointment_id).first()
    assert row is not None
    async with DB.transaction():
        bill = await billing.locked(row["bill_id"])
        appointment = await _locked(appointment_id)
        if appointment["state"] != AppointmentState.CANCELLED or bill.state not in (
            billing.BillState.PAID,
            billing.BillState.PARTIALLY_REFUNDED,
        ):
            return "nothing to refund"
        if appointment_id not in await unrefunded(timedelta(0)):
            return "a refund is under way"
        refund_id, cash_fen, messages = await billing.refund_within(
            bill, appointment["ended_reason"] or BY_PATIENT, places.CREATOR
        )
    log.warning("refund of a cancelled appointment asked again", appointment_id=str(appointment_id))
    await _after(rt, messages, refund_id if cash_fen else None)
    return "asked again"
