"""Walk-in registration (现场挂号) at a kiosk, for patients without a phone: the visit their face
check opened, today's sessions here with places left, and a hold made as the phone makes one."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.booking import browse, holds, places, views
from backend.booking.browse import RowId
from backend.booking.places import CHINA
from backend.booking.schemas import AppointmentRead, WalkInCreate, WalkInSessionPage, WalkInSessionRead
from backend.booking.tables import ClinicSession
from backend.ecert import service as ecert
from backend.hospitals import service as hospitals
from backend.oauth.service import Partner
from backend.platform.errors import NotFound
from backend.platform.runtime import Runtime


async def sessions_page(
    partner: Partner, visit_token: str, after: str | None, limit: int
) -> WalkInSessionPage:
    """Today's open sessions of the kiosk's institution with a place left that a walk-in can still
    be registered for (until shortly before they end), by start; for a live visit here."""
    institution = await hospitals.of_partner(partner.institution_code)
    await ecert.visit_for_bill(visit_token, partner)
    key = browse.after_key(after, (datetime, RowId))
    now = datetime.now(UTC)
    rows = await ClinicSession.raw(
        """
        SELECT s.id, s.department_id, dep.name AS department, s.doctor_id, d.name AS doctor, d.title,
               s.day AS date, s.period, s.starts_at, s.ends_at, f.fee_fen,
               s.capacity - s.booked AS places_left, s.slot_minutes IS NOT NULL AS numbered_slots
        FROM booking_session s
        JOIN booking_doctor d ON d.id = s.doctor_id
        JOIN booking_department dep ON dep.id = s.department_id
        JOIN booking_registration_fee f ON f.institution_id = s.institution_id AND f.title = d.title
        WHERE s.institution_id = {} AND s.day = {} AND s.state = 'OPEN' AND s.booked < s.capacity
          AND s.ends_at > {} AND (s.starts_at, s.id) > ({}, {})
        ORDER BY s.starts_at, s.id LIMIT {}
        """,
        institution.id,
        now.astimezone(CHINA).date(),
        now + places.LAST_HOLD,
        key[0] if key else datetime(1970, 1, 1, tzinfo=UTC),
        key[1] if key else 0,
        limit + 1,
    )
    items = [
        WalkInSessionRead(
            **{
                **row,
                "starts_at": row["starts_at"].astimezone(CHINA),
                "ends_at": row["ends_at"].astimezone(CHINA),
            }
        )
        for row in rows[:limit]
    ]
    last = rows[limit - 1] if len(rows) > limit else None
    return WalkInSessionPage(
        items=items, next_after=browse.cursor(last["starts_at"].isoformat(), last["id"]) if last else None
    )


async def book(rt: Runtime, partner: Partner, request: WalkInCreate, request_key: str) -> AppointmentRead:
    """A hold of one of this institution's sessions for the visit's patient, under every rule a
    phone booking meets, with its registration bill (paid next, at the kiosk, by face)."""
    if (made := await holds.made_under(request_key)) is not None:
        return await views.read(rt, made)
    institution = await hospitals.of_partner(partner.institution_code)
    _, insured_id = await ecert.visit_for_bill(request.visit_token, partner)
    return await holds.hold_for(
        rt,
        insured_id=insured_id,
        user_id=await _bound_user(insured_id),
        session_id=request.session_id,
        slot=request.slot,
        request_key=request_key,
        walk_in_at=institution.id,
    )


async def _bound_user(insured_id: int) -> int:
    """Who the appointment is booked by: the account the patient bound their e-certificate with
    (the older one, bound on both WeChat and Alipay; every bound account is told of it anyway). A
    relative identified by a holder's QR code may have none: they register at the desk."""
    user = await ecert.bound_user(insured_id)
    if user is None:
        raise NotFound(
            "this patient has no account of their own: register them at the desk",
            code="ECERT_NOT_BOUND",
            detail={"field": "visit_token"},
        )
    return user
