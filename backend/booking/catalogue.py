"""Hospitals publish their schedules: one institution's fees, departments, doctors and sessions
for a date range, created or updated in one transaction, checked field by field before anything
is written. A session's places are never cut below what is booked; a session cancelled (停诊)
has its appointments cancelled and refunded by a job (`cancellation.cancel_session`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any

import structlog

from backend.booking import cancellation, places
from backend.booking.places import CHINA
from backend.booking.schemas import ScheduleResult, ScheduleUpsert, SessionIn
from backend.booking.tables import ClinicSession
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.oauth.service import Partner
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_RANGE_DAYS = 92
HORIZON_DAYS = 366  # how far from today a schedule is published (or corrected)
# A cancelled session keeps the places it holds counted, whatever capacity comes with the 停诊.
_CAPACITY = (
    "CASE WHEN EXCLUDED.state = 'CANCELLED' THEN greatest(EXCLUDED.capacity, booking_session.booked) "
    "ELSE EXCLUDED.capacity END"
)


def _invalid(field: str, message: str) -> AppError:
    return AppError(message, code="VALIDATION_ERROR", status_code=422, detail={"field": field})


def _unique(kind: str, codes: Iterable[str]) -> None:
    seen: set[str] = set()
    for n, code in enumerate(codes):
        if code in seen:
            raise _invalid(f"{kind}[{n}].code", f"{code} appears twice")
        seen.add(code)


def _at(day: date, clock: str) -> datetime:
    hour, minute = clock.split(":")
    return datetime.combine(day, time(int(hour), int(minute)), tzinfo=CHINA)


async def _known(table: str, institution_id: int, column: str, values: list[str]) -> dict[str, Any]:
    rows = await ClinicSession.raw(
        f"SELECT {column} AS key, * FROM {table} "  # noqa: S608  # fixed names
        f"WHERE institution_id = {{}} AND {column} = ANY({{}}::text[])",
        institution_id,
        values,
    )
    return {row["key"]: row for row in rows}


async def _check(institution: Institution, request: ScheduleUpsert) -> None:
    """Everything that can be judged before writing: the range, unique codes, references, times."""
    if request.to_date < request.from_date:
        raise _invalid("to", "the range ends before it starts")
    if (request.to_date - request.from_date).days >= MAX_RANGE_DAYS:
        raise _invalid("to", f"publish at most {MAX_RANGE_DAYS} days at a time")
    today = datetime.now(UTC).astimezone(CHINA).date()
    if abs((request.from_date - today).days) > HORIZON_DAYS:
        raise _invalid("from", f"publish within {HORIZON_DAYS} days of today")
    for n, fee in enumerate(request.fees):
        if fee.title in (f.title for f in request.fees[:n]):
            raise _invalid(f"fees[{n}].title", f"{fee.title} appears twice")
    _unique("departments", (d.code for d in request.departments))
    _unique("doctors", (d.code for d in request.doctors))
    _unique("sessions", (s.code for s in request.sessions))
    departments = {d.code for d in request.departments}
    departments |= set(
        await _known("booking_department", institution.id, "code", [d.department for d in request.doctors])
    )
    titles: set[str] = {f.title for f in request.fees}
    titles |= set(
        await _known("booking_registration_fee", institution.id, "title", [d.title for d in request.doctors])
    )
    for n, doctor in enumerate(request.doctors):
        if doctor.department not in departments:
            raise _invalid(f"doctors[{n}].department", f"no department {doctor.department}")
        if doctor.title not in titles:
            raise _invalid(
                f"doctors[{n}].title", f"no registration fee for {doctor.title}: publish it in fees"
            )
    doctors = {d.code for d in request.doctors}
    doctors |= set(
        await _known("booking_doctor", institution.id, "code", [s.doctor for s in request.sessions])
    )
    for n, session in enumerate(request.sessions):
        _check_session(n, session, request, doctors)


def _check_session(n: int, session: SessionIn, request: ScheduleUpsert, doctors: set[str]) -> None:
    if session.doctor not in doctors:
        raise _invalid(f"sessions[{n}].doctor", f"no doctor {session.doctor}")
    if not request.from_date <= session.date <= request.to_date:
        raise _invalid(f"sessions[{n}].date", "outside the range published (from .. to)")
    minutes = (_at(session.date, session.end) - _at(session.date, session.start)).total_seconds() / 60
    if minutes <= 0:
        raise _invalid(f"sessions[{n}].end", "a session ends after it starts")
    if session.slot_minutes is not None and session.slot_minutes * session.capacity > minutes:
        raise _invalid(
            f"sessions[{n}].slot_minutes",
            f"{session.capacity} slots of {session.slot_minutes} minutes overrun the session",
        )


async def publish(rt: Runtime, partner: Partner, request: ScheduleUpsert) -> ScheduleResult:
    institution = await hospitals.of_partner(partner.institution_code)
    await _check(institution, request)
    async with DB.transaction():
        await _upsert_fees(institution, request)
        department_ids = await _upsert_departments(institution, request)
        doctor_ids = await _upsert_doctors(institution, request, department_ids)
        created, updated, cancelled, messages = await _upsert_sessions(rt, institution, request, doctor_ids)
    await outbox.send(rt.redis, messages)
    log.info(
        "schedule published",
        institution=institution.code,
        sessions_created=created,
        sessions_updated=updated,
        sessions_cancelled=cancelled,
    )
    return ScheduleResult(
        fees=len(request.fees),
        departments=len(request.departments),
        doctors=len(request.doctors),
        sessions_created=created,
        sessions_updated=updated,
        sessions_cancelled=cancelled,
    )


async def _upsert_fees(institution: Institution, request: ScheduleUpsert) -> None:
    if not request.fees:
        return
    await ClinicSession.raw(
        """
        INSERT INTO booking_registration_fee
            (institution_id, title, fee_fen, item_code, item_name, category, updated_at)
        SELECT {}, * , now() FROM unnest({}::text[], {}::bigint[], {}::text[], {}::text[], {}::text[])
        ON CONFLICT (institution_id, title) DO UPDATE SET fee_fen = EXCLUDED.fee_fen,
            item_code = EXCLUDED.item_code, item_name = EXCLUDED.item_name, category = EXCLUDED.category,
            updated_at = now()
        """,
        institution.id,
        [f.title for f in request.fees],
        [f.fee_fen for f in request.fees],
        [f.item_code for f in request.fees],
        [f.item_name for f in request.fees],
        [f.category for f in request.fees],
    )


async def _upsert_departments(institution: Institution, request: ScheduleUpsert) -> dict[str, int]:
    departments = sorted(request.departments, key=lambda d: d.code)  # rows locked in one order
    if departments:
        await ClinicSession.raw(
            """
            INSERT INTO booking_department (institution_id, code, name, intro, updated_at)
            SELECT {}, *, now() FROM unnest({}::text[], {}::text[], {}::text[])
            ON CONFLICT (institution_id, code) DO UPDATE SET name = EXCLUDED.name, intro = EXCLUDED.intro,
                updated_at = now()
            WHERE (booking_department.name, booking_department.intro)
                IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.intro)
            """,
            institution.id,
            [d.code for d in departments],
            [d.name for d in departments],
            [d.intro for d in departments],
        )
    codes = {d.department for d in request.doctors}
    known = await _known("booking_department", institution.id, "code", sorted(codes))
    return {code: row["id"] for code, row in known.items()}


async def _upsert_doctors(
    institution: Institution, request: ScheduleUpsert, department_ids: dict[str, int]
) -> dict[str, int]:
    doctors = sorted(request.doctors, key=lambda d: d.code)
    if doctors:
        await ClinicSession.raw(
            """
            INSERT INTO booking_doctor
                (institution_id, code, department_id, name, title, specialty, updated_at)
            SELECT {}, *, now() FROM unnest({}::text[], {}::int[], {}::text[], {}::text[], {}::text[])
            ON CONFLICT (institution_id, code) DO UPDATE SET department_id = EXCLUDED.department_id,
                name = EXCLUDED.name, title = EXCLUDED.title, specialty = EXCLUDED.specialty,
                updated_at = now()
            WHERE (booking_doctor.department_id, booking_doctor.name, booking_doctor.title,
                   booking_doctor.specialty)
                IS DISTINCT FROM (EXCLUDED.department_id, EXCLUDED.name, EXCLUDED.title, EXCLUDED.specialty)
            """,
            institution.id,
            [d.code for d in doctors],
            [department_ids[d.department] for d in doctors],
            [d.name for d in doctors],
            [d.title for d in doctors],
            [d.specialty for d in doctors],
        )
    codes = {s.doctor for s in request.sessions}
    known = await _known("booking_doctor", institution.id, "code", sorted(codes))
    return {code: row["id"] for code, row in known.items()}


async def _upsert_sessions(
    rt: Runtime, institution: Institution, request: ScheduleUpsert, doctor_ids: dict[str, int]
) -> tuple[int, int, int, list[int]]:
    """(created, updated, newly cancelled, outbox ids). Sessions already there are locked first,
    in id order, and checked against what they hold."""
    if not request.sessions:
        return 0, 0, 0, []
    existing = {
        row["code"]: row
        for row in await ClinicSession.raw(
            "SELECT * FROM booking_session WHERE institution_id = {} AND code = ANY({}::text[]) "
            "ORDER BY id FOR UPDATE",
            institution.id,
            [s.code for s in request.sessions],
        )
    }
    departments = {
        row["id"]: row["department_id"]
        for row in await ClinicSession.raw(
            "SELECT id, department_id FROM booking_doctor WHERE id = ANY({}::int[])",
            list(doctor_ids.values()),
        )
    }
    for n, session in enumerate(request.sessions):
        _check_against_bookings(n, session, existing.get(session.code), doctor_ids[session.doctor])
    sessions = sorted(request.sessions, key=lambda s: s.code)  # one order for concurrent publishes
    rows = await ClinicSession.raw(
        """
        INSERT INTO booking_session (institution_id, code, doctor_id, department_id, day, period, starts_at,
                                     ends_at, capacity, slot_minutes, state, cancel_reason, booked, numbered,
                                     updated_at)
        SELECT {}, *, 0, 0, now() FROM unnest({}::text[], {}::int[], {}::int[], {}::date[], {}::text[],
                                               {}::timestamptz[], {}::timestamptz[], {}::int[], {}::int[],
                                               {}::text[], {}::text[])
        ON CONFLICT (institution_id, code) DO UPDATE SET doctor_id = EXCLUDED.doctor_id,
            department_id = EXCLUDED.department_id, day = EXCLUDED.day, period = EXCLUDED.period,
            starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, capacity = <capacity>,
            slot_minutes = EXCLUDED.slot_minutes, state = EXCLUDED.state,
            cancel_reason = EXCLUDED.cancel_reason, updated_at = now()
        WHERE (booking_session.doctor_id, booking_session.day, booking_session.period,
               booking_session.starts_at,
               booking_session.ends_at, booking_session.capacity, booking_session.slot_minutes,
               booking_session.state, booking_session.cancel_reason)
            IS DISTINCT FROM (EXCLUDED.doctor_id, EXCLUDED.day, EXCLUDED.period, EXCLUDED.starts_at,
                              EXCLUDED.ends_at, <capacity>, EXCLUDED.slot_minutes, EXCLUDED.state,
                              EXCLUDED.cancel_reason)
        RETURNING id, code, state, capacity, (xmax = 0) AS created
        """.replace("<capacity>", _CAPACITY),
        institution.id,
        [s.code for s in sessions],
        [doctor_ids[s.doctor] for s in sessions],
        [departments[doctor_ids[s.doctor]] for s in sessions],
        [s.date for s in sessions],
        [s.period for s in sessions],
        [_at(s.date, s.start) for s in sessions],
        [_at(s.date, s.end) for s in sessions],
        [s.capacity for s in sessions],
        [s.slot_minutes for s in sessions],
        ["CANCELLED" if s.cancelled else "OPEN" for s in sessions],
        [s.cancel_reason if s.cancelled else None for s in sessions],
    )
    created = sum(1 for r in rows if r["created"])
    messages: list[int] = []
    cancelled = 0
    for row in rows:
        before = existing.get(row["code"])
        if row["state"] == "CANCELLED" and (before is None or before["state"] != "CANCELLED"):
            cancelled += 1
            await places.close_waitlist(row["id"], "the session was cancelled")
            if before is not None and before["booked"]:
                messages.append(await outbox.add(cancellation.CANCEL_SESSION, {"session_id": row["id"]}))
        elif before is not None and row["capacity"] > before["capacity"]:
            messages += await places.offer_free_places(rt, row["id"])  # more places: the waitlist first
    return created, len(rows) - created, cancelled, messages


def _check_against_bookings(
    n: int, session: SessionIn, before: dict[str, Any] | None, doctor_id: int
) -> None:
    if before is None:
        return
    field = f"sessions[{n}]"
    if before["state"] == "CANCELLED":
        if not session.cancelled:
            raise Conflict(
                "a cancelled session stays cancelled: publish a new session instead",
                code="SESSION_CANCELLED",
                detail={"field": f"{field}.cancelled"},
            )
        return
    if session.cancelled and before["booked"] and before["ends_at"] <= datetime.now(UTC):
        raise Conflict(
            "the session is over and had patients: it can no longer be cancelled",
            code="SESSION_ENDED",
            detail={"field": f"{field}.cancelled", "booked": before["booked"]},
        )
    if session.cancelled or not before["booked"]:
        return
    if session.capacity < before["booked"]:
        raise Conflict(
            f"{before['booked']} places are booked: the capacity cannot go below that",
            code="CAPACITY_BELOW_BOOKED",
            detail={"field": f"{field}.capacity", "booked": before["booked"]},
        )
    moved = (
        doctor_id != before["doctor_id"]
        or session.date != before["day"]
        or session.period != before["period"]
        or _at(session.date, session.start) != before["starts_at"]
        or _at(session.date, session.end) != before["ends_at"]
        or session.slot_minutes != before["slot_minutes"]
    )
    if moved:
        raise Conflict(
            "this session has bookings: its doctor, time and slots cannot change (cancel it instead)",
            code="SESSION_HAS_BOOKINGS",
            detail={"field": field, "booked": before["booked"]},
        )
