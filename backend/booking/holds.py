"""Holding a place: the guarded take of one of the session's places, an appointment HELD and its
registration bill, paid through the ordinary pay flow. Billing tells us (`ORDER`) inside the
transaction that pays or ends that bill: paid confirms the appointment with its queue number;
closed unpaid ends the hold and gives the place back, to the waitlist first."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from backend.auth.service import Patient
from backend.billing import orders
from backend.billing import service as billing
from backend.billing.records import BillRecord
from backend.booking import cancellation, places, views
from backend.booking.places import CHINA
from backend.booking.schemas import AppointmentCreate, AppointmentRead
from backend.booking.tables import Appointment, AppointmentState, ClinicSession, WaitlistEntry
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


def _closed(why: str, **detail: object) -> Conflict:
    return Conflict(why, code="SESSION_CLOSED", detail={"field": "session_id", **detail})


async def book(
    rt: Runtime, patient: Patient, request: AppointmentCreate, request_key: str | None = None
) -> AppointmentRead:
    """Hold a place of a session for the patient, with a bill for its fee to pay in the window.
    Made before under `request_key` (a retry after a failure), that hold."""
    if request_key is not None and (made := await made_under(request_key)) is not None:
        return await views.read(rt, made)
    insured_id = await views.booked_for(patient, request.relative_link_id)
    return await hold_for(
        rt,
        insured_id=insured_id,
        user_id=patient.user_id,
        session_id=request.session_id,
        slot=request.slot,
        request_key=request_key,
    )


async def hold_for(
    rt: Runtime,
    *,
    insured_id: int,
    user_id: int,
    session_id: int,
    slot: int | None,
    request_key: str | None,
    walk_in_at: int | None = None,
) -> AppointmentRead:
    """Every booking's rules and its hold, whoever books: `user_id` booked it for `insured_id`.
    A walk-in at an institution (`walk_in_at`, a kiosk's) books only its sessions, and a session
    under way until shortly before it ends."""
    where = await places.place(session_id)
    if where is None or (walk_in_at is not None and where.institution_id != walk_in_at):
        raise NotFound("no such session", code="SESSION_NOT_FOUND", detail={"field": "session_id"})
    walk_in = walk_in_at is not None
    now, settings = datetime.now(UTC), rt.settings.booking
    closes_at = places.closes_at(where, walk_in=walk_in)
    if where.state != "OPEN":
        raise _closed("the session was cancelled", state=where.state)
    if closes_at <= now + places.LAST_HOLD:
        raise _closed(_closing(walk_in))
    await check_may_book(rt, insured_id, where.day)
    slot = _slot_asked(slot, where.slot_minutes, where.capacity)
    if await places.has_active(insured_id, where.doctor_id, where.day):
        raise places.duplicate()
    expires_at = min(now + timedelta(seconds=settings.hold_seconds), closes_at)
    try:
        async with DB.transaction():
            if not await places.take(session_id, walk_in=walk_in):
                raise await _why_not_taken(session_id, walk_in=walk_in)
            if slot is None and where.slot_minutes:
                slot = await places.free_slot(session_id, where.capacity)
            appointment_id, bill_id = await places.hold(
                where,
                insured_id=insured_id,
                user_id=user_id,
                slot=slot,
                expires_at=expires_at,
                request_key=request_key,
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "created_once" and request_key is not None:
            made = await made_under(request_key)  # the same request a moment ago
            assert made is not None
            return await views.read(rt, made)
        if exc.constraint_name == "appointment_once_per_doctor_day":
            raise places.duplicate() from None
        if exc.constraint_name == "appointment_slot_once":
            raise Conflict(
                f"slot {slot} is taken", code="SLOT_TAKEN", detail={"field": "slot", "slot": slot}
            ) from None
        raise
    await billing.schedule_expiry(rt, bill_id, expires_at)
    log.info("place held", session_id=session_id, appointment_id=str(appointment_id), walk_in=walk_in)
    return await views.read(rt, appointment_id)


def _closing(walk_in: bool) -> str:
    if walk_in:
        return "the session is ending: registration for it is closed"
    return "the session is starting: booking is closed"


def _slot_asked(slot: int | None, slot_minutes: int | None, capacity: int) -> int | None:
    if slot is None:
        return None
    if not slot_minutes:
        raise AppError(
            "this session has no numbered slots: leave slot out",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "slot"},
        )
    if slot > capacity:
        raise AppError(
            f"this session's slots are 1 to {capacity}",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "slot", "slots": capacity},
        )
    return slot


async def _why_not_taken(session_id: int, *, walk_in: bool) -> AppError:
    session = (
        await ClinicSession.select(ClinicSession.state, ClinicSession.starts_at, ClinicSession.ends_at)
        .where(ClinicSession.id == session_id)
        .first()
    )
    assert session is not None
    if session["state"] != "OPEN":
        return _closed("the session was cancelled", state=session["state"])
    closes_at = session["ends_at"] if walk_in else session["starts_at"]
    if closes_at <= datetime.now(UTC) + places.LAST_HOLD:
        return _closed(_closing(walk_in))
    return Conflict(
        "no place is left in this session: join its waitlist to be offered one that frees up",
        code="SESSION_FULL",
        detail={"field": "session_id", "waitlist": f"/api/v1/sessions/{session_id}/waitlist"},
    )


async def made_under(request_key: str) -> uuid.UUID | None:
    """The appointment a booking under `request_key` made, if one did."""
    bill_id = await billing.created_under(places.CREATOR, request_key)
    if bill_id is None:
        return None
    row = await Appointment.select(Appointment.id).where(Appointment.bill_id == bill_id).first()
    return None if row is None else row["id"]


async def check_may_book(rt: Runtime, insured_id: int, day: date) -> None:
    """Booking (or queueing) for a session on `day`: open yet, and not barred by no-shows."""
    opens_at = datetime.combine(
        day - timedelta(days=rt.settings.booking.open_days), datetime.min.time(), tzinfo=CHINA
    )
    if datetime.now(UTC) < opens_at:
        raise Conflict(
            f"booking for this session opens at {opens_at.isoformat()}",
            code="BOOKING_NOT_OPEN",
            detail={"field": "session_id", "opens_at": opens_at.isoformat()},
        )
    limit = rt.settings.booking.no_show_limit
    if not limit:
        return
    count = await views.no_shows(rt, insured_id)
    if count >= limit:
        raise Forbidden(
            f"{count} missed appointments in the last {rt.settings.booking.no_show_window_days} days: "
            "booking online is suspended; please register at the hospital",
            code="BOOKING_BARRED",
            detail={"no_shows": count, "limit": limit},
        )


# -- told by billing ---------------------------------------------------------------------------


async def _locked_for(bill: BillRecord) -> dict[str, Any] | None:
    rows = await Appointment.raw("SELECT * FROM appointment WHERE bill_id = {} FOR UPDATE", bill.id)
    return rows[0] if rows else None


async def paid(rt: Runtime, bill: BillRecord) -> list[int]:
    """The registration fee is paid: the hold is confirmed, with its queue number. Once."""
    appointment = await _locked_for(bill)
    if appointment is None or appointment["state"] != AppointmentState.HELD:
        # A hold ends only as its bill does, in the same transaction: this cannot happen.
        log.error("registration paid for no held appointment", bill_id=str(bill.id))
        return []
    session_id = appointment["session_id"]
    if appointment["slot"] is not None:
        queue_no = appointment["slot"]
    else:
        numbered = await ClinicSession.raw(
            "UPDATE booking_session SET numbered = numbered + 1 WHERE id = {} RETURNING numbered, state",
            session_id,
        )
        queue_no = numbered[0]["numbered"]
    now = datetime.now(UTC)
    await Appointment.update(
        {
            Appointment.state: AppointmentState.CONFIRMED,
            Appointment.queue_no: queue_no,
            Appointment.confirmed_at: now,
            Appointment.updated_at: now,
        }
    ).where((Appointment.id == appointment["id"]) & (Appointment.state == AppointmentState.HELD))
    if appointment["waitlist_id"] is not None:
        await WaitlistEntry.update({WaitlistEntry.state: "BOOKED", WaitlistEntry.ended_at: now}).where(
            WaitlistEntry.id == appointment["waitlist_id"]
        )
    where = await places.place(session_id)
    assert where is not None
    if where.state != "OPEN":
        # Paid while its session was being cancelled (停诊): the cancellation refunds it too.
        messages = [await outbox.add(cancellation.CANCEL_SESSION, {"session_id": session_id})]
    else:
        messages = await places.tell(
            bill.insured_id, "appointment_booked", appointment["id"], "booked", where
        )
    log.info("appointment confirmed", appointment_id=str(appointment["id"]), queue_no=queue_no)
    return messages


async def ended(rt: Runtime, bill: BillRecord, reason: str) -> list[int]:
    """The registration bill closed unpaid: the hold expires and its place is given back."""
    appointment = await _locked_for(bill)
    if appointment is None or appointment["state"] != AppointmentState.HELD:
        return []  # cancelled first, and its bill closed with it
    now = datetime.now(UTC)
    await Appointment.update(
        {
            Appointment.state: AppointmentState.EXPIRED,
            Appointment.ended_at: now,
            Appointment.ended_reason: reason,
            Appointment.updated_at: now,
        }
    ).where((Appointment.id == appointment["id"]) & (Appointment.state == AppointmentState.HELD))
    if appointment["waitlist_id"] is not None:
        await WaitlistEntry.update({WaitlistEntry.state: "LAPSED", WaitlistEntry.ended_at: now}).where(
            WaitlistEntry.id == appointment["waitlist_id"]
        )
    log.info("hold expired", appointment_id=str(appointment["id"]), reason=reason)
    return await places.release(rt, appointment["session_id"])


async def lock(bill: BillRecord) -> None:
    """A registration fee about to be paid: its appointment, then its session (whose queue number
    `paid` draws), locked before the payment's accounts, in the order a cancellation takes them."""
    appointment = await _locked_for(bill)
    if appointment is not None:
        await ClinicSession.raw(
            "SELECT 1 FROM booking_session WHERE id = {} FOR NO KEY UPDATE", appointment["session_id"]
        )


ORDER = orders.Order(paid=paid, ended=ended, lock=lock)
CREATOR = orders.register("booking", ORDER)
assert places.CREATOR == CREATOR, "the creator name booking's bills carry"
