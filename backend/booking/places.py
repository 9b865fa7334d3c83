"""What booking's use cases share: a session's places, taken and given back by guarded updates on
its row; a hold (an appointment and its registration bill) made for a place; and a freed place
offered to the first in its waitlist. Everything here joins the caller's transaction.

Lock order, everywhere: a bill, then its appointment, then the session. A session's row is locked
only by the statement that changes its count, so a hot session locks itself and nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from backend.billing import service as billing
from backend.booking.tables import ACTIVE, Appointment, AppointmentState, ClinicSession, WaitlistEntry
from backend.ecert import service as ecert
from backend.notify import service as notify
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import Conflict
from backend.platform.runtime import Runtime
from backend.platform.work import Task

log = structlog.get_logger(__name__)


async def _schedule_expiry(rt: Runtime, payload: dict[str, str]) -> None:
    bill_id = uuid.UUID(payload["bill_id"])
    await billing.schedule_expiry(rt, bill_id, datetime.fromisoformat(payload["at"]))


# A hold made inside another transaction (a waitlist offer, as a bill ends) has its expiry
# scheduled by an outbox message: after commit, or by the outbox sweeper.
SCHEDULE_EXPIRY = Task("booking.schedule_hold_expiry", _schedule_expiry)

CHINA = ZoneInfo("Asia/Shanghai")  # sessions are published, and days counted, in Beijing time
CREATOR = "domain:booking"  # what the registration bills carry as their creator
# A waitlist offer is made only while there is time to pay it before the session starts.
OFFER_AT_LEAST = timedelta(minutes=5)
# Nor is a place held when its bill could not be paid: payment never starts in a bill's last minute.
LAST_HOLD = timedelta(minutes=2)


@dataclass(frozen=True)
class Place:
    """A session as a hold needs it: where, who, when, its places and its fee."""

    session_id: int
    institution_id: int
    department: str
    doctor_id: int
    doctor: str
    day: date
    starts_at: datetime
    ends_at: datetime
    slot_minutes: int | None
    capacity: int
    state: str  # the session's: OPEN or CANCELLED
    fee_fen: int
    fee_item_code: str
    fee_item_name: str
    fee_category: str


async def place(session_id: int) -> Place | None:
    rows = await ClinicSession.raw(
        """
        SELECT s.id AS session_id, s.institution_id, dep.name AS department, s.doctor_id, d.name AS doctor,
               s.day, s.starts_at, s.ends_at, s.slot_minutes, s.capacity, s.state, f.fee_fen,
               f.item_code AS fee_item_code, f.item_name AS fee_item_name, f.category AS fee_category
        FROM booking_session s
        JOIN booking_doctor d ON d.id = s.doctor_id
        JOIN booking_department dep ON dep.id = s.department_id
        JOIN booking_registration_fee f ON f.institution_id = s.institution_id AND f.title = d.title
        WHERE s.id = {}
        """,
        session_id,
    )
    return Place(**rows[0]) if rows else None


def duplicate() -> Conflict:
    return Conflict(
        "you already have an appointment with this doctor on this day",
        code="APPOINTMENT_DUPLICATE",
        detail={"field": "session_id"},
    )


async def has_active(insured_id: int, doctor_id: int, day: date) -> bool:
    return bool(
        await Appointment.exists().where(
            (Appointment.insured_id == insured_id)
            & (Appointment.doctor_id == doctor_id)
            & (Appointment.day == day)
            & Appointment.state.is_in(list(ACTIVE))
        )
    )


def closes_at(where: Place, *, walk_in: bool = False) -> datetime:
    """When holds of the session end: at its start, or for a patient walking in at the hospital
    (a kiosk), at its end. No hold is made in the last `LAST_HOLD` before it, nor outlives it."""
    return where.ends_at if walk_in else where.starts_at


async def take(session_id: int, *, walk_in: bool = False) -> bool:
    """One place of an open session still taking holds (`closes_at`), if one is left: the guarded
    update every booking goes through. Its row stays locked until the caller commits."""
    closes = "ends_at" if walk_in else "starts_at"
    rows = await ClinicSession.raw(
        f"UPDATE booking_session SET booked = booked + 1 WHERE id = {{}} AND state = 'OPEN' "  # noqa: S608
        f"AND booked < capacity AND {closes} > {{}} RETURNING id",  # the column is one of two, fixed
        session_id,
        datetime.now(UTC) + LAST_HOLD,
    )
    return bool(rows)


async def free_slot(session_id: int, capacity: int) -> int:
    """The lowest slot no holding appointment has; called with the session's row locked."""
    rows = await Appointment.raw(
        """
        SELECT n FROM generate_series(1, {}) AS n
        WHERE NOT EXISTS (SELECT 1 FROM appointment a WHERE a.session_id = {} AND a.slot = n
                          AND a.state IN ('HELD', 'CONFIRMED', 'CHECKED_IN', 'NO_SHOW'))
        ORDER BY n LIMIT 1
        """,
        capacity,
        session_id,
    )
    assert rows, "a place was taken, so a slot is free"
    return int(rows[0]["n"])


async def hold(
    where: Place,
    *,
    insured_id: int,
    user_id: int,
    slot: int | None,
    expires_at: datetime,
    waitlist_id: int | None = None,
    request_key: str | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A HELD appointment for a place just taken, and its registration bill: (appointment, bill)."""
    bill_id = await billing.create_within(
        creator=CREATOR,
        institution_id=where.institution_id,
        insured_id=insured_id,
        order_type="REG",
        lines=[
            billing.Line(
                code=where.fee_item_code,
                name=where.fee_item_name,
                category=where.fee_category,  # type: ignore[arg-type]  # CHECKed by the table
                unit_price_fen=where.fee_fen,
            )
        ],
        expires_at=expires_at,
        request_key=request_key,
    )
    appointment_id, now = uuid.uuid4(), datetime.now(UTC)
    await Appointment.insert(
        Appointment(
            id=appointment_id,
            session_id=where.session_id,
            institution_id=where.institution_id,
            doctor_id=where.doctor_id,
            day=where.day,
            insured_id=insured_id,
            user_id=user_id,
            state=AppointmentState.HELD,
            slot=slot,
            fee_fen=where.fee_fen,
            bill_id=bill_id,
            waitlist_id=waitlist_id,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
    )
    return appointment_id, bill_id


async def release(rt: Runtime, session_id: int) -> list[int]:
    """A place given back (a hold expired, an appointment cancelled): offered to the first in the
    session's waitlist, or counted free. Outbox ids to send after commit."""
    await ClinicSession.raw(
        "UPDATE booking_session SET booked = booked - 1 WHERE id = {} AND booked > 0", session_id
    )
    return await offer_free_places(rt, session_id)


async def offer_free_places(rt: Runtime, session_id: int) -> list[int]:
    """While the session has a free place and someone waits for it, the first in line is offered
    it as a hold of their own, with a payment window and a notification. In strict order: the
    line's first entry is locked, and a place is taken for it by the same guarded update."""
    messages: list[int] = []
    while True:
        rows = await ClinicSession.raw(
            "SELECT id, capacity, booked, state, starts_at FROM booking_session WHERE id = {} FOR UPDATE",
            session_id,
        )
        session = rows[0]
        now = datetime.now(UTC)
        if session["state"] != "OPEN" or session["booked"] >= session["capacity"]:
            return messages
        if session["starts_at"] - now < OFFER_AT_LEAST:
            await close_waitlist(session_id, "the session is about to start")
            return messages
        first = await WaitlistEntry.raw(
            "SELECT id, insured_id, user_id FROM booking_waitlist "
            "WHERE session_id = {} AND state = 'WAITING' "
            "ORDER BY id LIMIT 1 FOR UPDATE",
            session_id,
        )
        if not first:
            return messages
        entry = first[0]
        where = await place(session_id)
        assert where is not None
        if await has_active(entry["insured_id"], where.doctor_id, where.day):
            await end_entry(entry["id"], "CLOSED")  # they booked the doctor that day otherwise
            continue
        expires_at = min(now + timedelta(seconds=rt.settings.booking.offer_seconds), session["starts_at"])
        slot = await free_slot(session_id, session["capacity"]) if where.slot_minutes else None
        # They may be booking the doctor that day this very moment: then the insert meets theirs.
        transaction = DB.current_transaction.get()
        assert transaction is not None, "offers are made inside the caller's transaction"
        savepoint = await transaction.savepoint()
        try:
            assert await take(session_id)
            appointment_id, bill_id = await hold(
                where,
                insured_id=entry["insured_id"],
                user_id=entry["user_id"],
                slot=slot,
                expires_at=expires_at,
                waitlist_id=entry["id"],
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "appointment_once_per_doctor_day":
                raise
            await savepoint.rollback_to()  # type: ignore[no-untyped-call]  # piccolo's, untyped
            await end_entry(entry["id"], "CLOSED")
            continue
        await savepoint.release()  # type: ignore[no-untyped-call]
        await WaitlistEntry.update(
            {
                WaitlistEntry.state: "OFFERED",
                WaitlistEntry.appointment_id: appointment_id,
                WaitlistEntry.offered_at: now,
            }
        ).where(WaitlistEntry.id == entry["id"])
        messages.append(
            await outbox.add(SCHEDULE_EXPIRY, {"bill_id": str(bill_id), "at": expires_at.isoformat()})
        )
        messages += await tell(
            entry["insured_id"],
            "appointment_offered",
            appointment_id,
            "offered",
            where,
            expires_at=expires_at.astimezone(CHINA).isoformat(),
        )
        log.info("waitlist offered a place", session_id=session_id, waitlist_id=entry["id"])


async def close_started_waitlists() -> int:
    """Lines of sessions that have begun: nobody in them will be offered a place now."""
    closed = await WaitlistEntry.raw(
        """
        UPDATE booking_waitlist w SET state = 'CLOSED', ended_at = now() FROM booking_session s
        WHERE s.id = w.session_id AND w.state = 'WAITING' AND s.starts_at <= now() RETURNING w.id
        """
    )
    return len(closed)


async def close_waitlist(session_id: int, why: str) -> None:
    """Nobody waiting is offered a place any more (the session was cancelled or is starting)."""
    closed = await WaitlistEntry.raw(
        "UPDATE booking_waitlist SET state = 'CLOSED', ended_at = now() WHERE session_id = {} "
        "AND state = 'WAITING' RETURNING id",
        session_id,
    )
    if closed:
        log.info("waitlist closed", session_id=session_id, entries=len(closed), why=why)


async def end_entry(entry_id: int, state: str) -> None:
    await WaitlistEntry.update({WaitlistEntry.state: state, WaitlistEntry.ended_at: datetime.now(UTC)}).where(
        WaitlistEntry.id == entry_id
    )


async def tell(
    insured_id: int,
    template: str,
    appointment_id: uuid.UUID,
    milestone: str,
    where: Place,
    **params: str,
) -> list[int]:
    """Notify every user bound to the patient about an appointment, and whoever booked it for them
    (a relative managing their appointments), once per milestone."""
    person = await ecert.insured_person(insured_id)
    messages = []
    users = await ecert.users_of_insured(insured_id)
    booker = await Appointment.select(Appointment.user_id).where(Appointment.id == appointment_id).first()
    if booker is not None and booker["user_id"] not in users:
        users.append(int(booker["user_id"]))
    for user_id in users:
        message = await notify.notify(
            user_id,
            template,
            f"appointment:{appointment_id}",
            milestone,
            {
                "appointment_id": str(appointment_id),
                "department": where.department,
                "doctor": where.doctor,
                "starts_at": where.starts_at.astimezone(CHINA).isoformat(),
                "patient": person.masked.name,
                **params,
            },
        )
        if message is not None:
            messages.append(message)
    return messages
