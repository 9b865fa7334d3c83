"""Browsing the catalogue: hospitals by region and name, their departments, a department's
doctors (with their sessions on a day), a doctor's sessions with the places left. Every list is
a page in a stable order, continued by keyset (`after`), never by offset."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import msgspec

from backend.booking.places import CHINA
from backend.booking.schemas import (
    DepartmentPage,
    DepartmentRead,
    DoctorPage,
    DoctorRead,
    HospitalPage,
    HospitalRead,
    SessionPage,
    SessionRead,
)
from backend.booking.tables import ClinicSession
from backend.hospitals import service as hospitals
from backend.platform.errors import AppError, NotFound
from backend.platform.runtime import Runtime

MAX_SPAN_DAYS = 31


def cursor(*key: Any) -> str:
    """The keyset of a page's last item, opaque to the client (`next_after`)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


RowId = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
HORIZON = timedelta(days=366)  # how far from today the catalogue is browsed


def _within_horizon(field: str, day: date | None) -> date | None:
    today = datetime.now(UTC).astimezone(CHINA).date()
    if day is not None and abs(day - today) > HORIZON:
        raise AppError(
            f"ask about days within {HORIZON.days} days of today",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": field},
        )
    return day


def after_key(after: str | None, kinds: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The key of a cursor `cursor` gave out, or 422 naming `after`."""
    if after is None:
        return None
    try:
        raw = msgspec.json.decode(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError
        return tuple(
            msgspec.convert(value, kind, strict=False) for value, kind in zip(raw, kinds, strict=True)
        )
    except (ValueError, msgspec.ValidationError, msgspec.DecodeError):
        raise AppError(
            "not a cursor this list gave out",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "after"},
        ) from None


async def hospitals_page(region: str | None, q: str | None, after: str | None, limit: int) -> HospitalPage:
    start = after_key(after, (RowId,))
    found = await hospitals.search(region=region, text=q, after_id=start[0] if start else 0, limit=limit + 1)
    items = [
        HospitalRead(id=h.id, code=h.code, name=h.name, level=h.level, region_code=h.region_code)
        for h in found[:limit]
    ]
    return HospitalPage(items=items, next_after=cursor(items[-1].id) if len(found) > limit else None)


async def departments_page(institution_id: int, after: str | None, limit: int) -> DepartmentPage:
    if await hospitals.named({institution_id}) == {}:
        raise NotFound("no such hospital", code="HOSPITAL_NOT_FOUND")
    start = after_key(after, (RowId,))
    rows = await ClinicSession.raw(
        "SELECT id, code, name, intro FROM booking_department WHERE institution_id = {} AND id > {} "
        "ORDER BY id LIMIT {}",
        institution_id,
        start[0] if start else 0,
        limit + 1,
    )
    items = [DepartmentRead(**row) for row in rows[:limit]]
    return DepartmentPage(items=items, next_after=cursor(items[-1].id) if len(rows) > limit else None)


_SESSION = """
    s.id, s.doctor_id, s.day, s.period, s.starts_at, s.ends_at, s.capacity, s.booked, s.state,
    s.slot_minutes IS NOT NULL AS numbered_slots, f.fee_fen
"""


def _session(rt: Runtime, row: dict[str, Any], now: datetime) -> SessionRead:
    opens_at = datetime.combine(
        row["day"] - timedelta(days=rt.settings.booking.open_days), datetime.min.time(), tzinfo=CHINA
    )
    left = row["capacity"] - row["booked"]
    return SessionRead(
        id=row["id"],
        doctor_id=row["doctor_id"],
        date=row["day"],
        period=row["period"],
        starts_at=row["starts_at"].astimezone(CHINA),
        ends_at=row["ends_at"].astimezone(CHINA),
        capacity=row["capacity"],
        places_left=left,
        fee_fen=row["fee_fen"],
        numbered_slots=row["numbered_slots"],
        state=row["state"],
        bookable=row["state"] == "OPEN" and left > 0 and opens_at <= now < row["starts_at"],
    )


async def doctors_page(
    rt: Runtime, department_id: int, day: date | None, after: str | None, limit: int
) -> DoctorPage:
    """The department's doctors; with `day`, those working that day and their sessions."""
    _within_horizon("date", day)
    if not await ClinicSession.raw("SELECT 1 FROM booking_department WHERE id = {}", department_id):
        raise NotFound("no such department", code="DEPARTMENT_NOT_FOUND")
    start = after_key(after, (RowId,))
    working = (  # a doctor whose sessions that day are all cancelled is not working
        "AND EXISTS (SELECT 1 FROM booking_session s WHERE s.doctor_id = d.id AND s.day = {} "
        "AND s.state = 'OPEN')"
        if day
        else ""
    )
    args: list[Any] = [department_id, start[0] if start else 0, *([day] if day else []), limit + 1]
    rows = await ClinicSession.raw(
        f"""
        SELECT d.id, d.code, d.name, d.title, d.specialty, d.department_id, f.fee_fen
        FROM booking_doctor d
        LEFT JOIN booking_registration_fee f ON f.institution_id = d.institution_id AND f.title = d.title
        WHERE d.department_id = {{}} AND d.id > {{}} {working}
        ORDER BY d.id LIMIT {{}}
        """,  # noqa: S608  # the text is fixed; the values are parameters
        *args,
    )
    sessions: dict[int, list[SessionRead]] = {}
    if day is not None and rows:
        now = datetime.now(UTC)
        for row in await ClinicSession.raw(
            f"""
            SELECT {_SESSION} FROM booking_session s
            JOIN booking_doctor d ON d.id = s.doctor_id
            JOIN booking_registration_fee f ON f.institution_id = s.institution_id AND f.title = d.title
            WHERE s.doctor_id = ANY({{}}::int[]) AND s.day = {{}} ORDER BY s.starts_at, s.id
            """,  # noqa: S608
            [r["id"] for r in rows[:limit]],
            day,
        ):
            sessions.setdefault(row["doctor_id"], []).append(_session(rt, row, now))
    items = [DoctorRead(**row, sessions=sessions.get(row["id"], [])) for row in rows[:limit]]
    return DoctorPage(items=items, next_after=cursor(items[-1].id) if len(rows) > limit else None)


async def sessions_page(
    rt: Runtime, doctor_id: int, start: date | None, end: date | None, after: str | None, limit: int
) -> SessionPage:
    """A doctor's sessions from `start` to `end` (today and the booking window by default)."""
    if not await ClinicSession.raw("SELECT 1 FROM booking_doctor WHERE id = {}", doctor_id):
        raise NotFound("no such doctor", code="DOCTOR_NOT_FOUND")
    today = datetime.now(UTC).astimezone(CHINA).date()
    start = _within_horizon("from", start) or today
    end = _within_horizon("to", end) or today + timedelta(days=rt.settings.booking.open_days)
    if end < start:
        raise AppError(
            "`to` is before `from`", code="VALIDATION_ERROR", status_code=422, detail={"field": "to"}
        )
    if (end - start).days >= MAX_SPAN_DAYS:
        raise AppError(
            f"ask for at most {MAX_SPAN_DAYS} days at a time",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "to"},
        )
    key = after_key(after, (datetime, RowId))
    rows = await ClinicSession.raw(
        f"""
        SELECT {_SESSION} FROM booking_session s
        JOIN booking_doctor d ON d.id = s.doctor_id
        JOIN booking_registration_fee f ON f.institution_id = s.institution_id AND f.title = d.title
        WHERE s.doctor_id = {{}} AND s.starts_at >= {{}} AND s.starts_at < {{}}
          AND (s.starts_at, s.id) > ({{}}, {{}})
        ORDER BY s.starts_at, s.id LIMIT {{}}
        """,  # noqa: S608
        doctor_id,
        datetime.combine(start, datetime.min.time(), tzinfo=CHINA),
        datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=CHINA),
        key[0] if key else datetime(1970, 1, 1, tzinfo=UTC),
        key[1] if key else 0,
        limit + 1,
    )
    now = datetime.now(UTC)
    items = [_session(rt, row, now) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return SessionPage(
        items=items, next_after=cursor(last["starts_at"].isoformat(), last["id"]) if last else None
    )
