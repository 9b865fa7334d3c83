"""Walk-in registration at a kiosk: an elder without a phone shows their face, picks one of today's
sessions here and gets a hold and its registration bill, under the rules a phone booking meets."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from backend.booking.tables import Appointment, ClinicSession
from backend.ecert.tables import Visit
from backend.notify.tables import Notification
from tests.billing.factories import Insured, insured_patient, key
from tests.booking.arrange import (
    book,
    held,
    one_session,
    pay_fee,
    publish,
    running_now,
    schedule,
    session,
    session_ids,
)
from tests.helpers import bearer, face_assertion, partner_token

Client = httpx.AsyncClient
SESSIONS = "/api/v1/partner/kiosk/sessions"
APPOINTMENTS = "/api/v1/partner/kiosk/appointments"


async def kiosk(client: Client, institution: str = "H33010001") -> dict[str, str]:
    return bearer(await partner_token(client, "kiosk", ["ecert:decode", "kiosk:pay"], institution))


async def face_check(client: Client, sandbox: Client, headers: dict[str, str], patient: Insured) -> str:
    """The patient looks into the kiosk's camera: a visit here."""
    assertion = await face_assertion(sandbox, patient.id_number)
    opened = await client.post(
        "/api/v1/partner/ecert/face", json={"face_assertion": assertion}, headers=headers
    )
    assert opened.status_code == 200, opened.text
    return str(opened.json()["visit_token"])


async def today(client: Client, patient: Insured, **kwargs: Any) -> int:
    """A session of today (D001's unless told), under way since 5 minutes ago, ending in an hour."""
    session_id = await one_session(client, patient, **kwargs)
    await running_now(session_id)
    return session_id


async def listed(client: Client, headers: dict[str, str], visit: str, **params: Any) -> httpx.Response:
    return await client.get(SESSIONS, params={"visit_token": visit, **params}, headers=headers)


async def walk_in(
    client: Client, headers: dict[str, str], visit: str, session_id: int, **body: Any
) -> httpx.Response:
    return await client.post(
        APPOINTMENTS,
        json={"visit_token": visit, "session_id": session_id, **body},
        headers={**headers, **key()},
    )


def code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


async def test_an_elder_walks_in_picks_a_session_of_today_and_gets_a_hold_and_its_bill(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient, capacity=5)
    headers = await kiosk(client)
    visit = await face_check(client, sandbox_http, headers, patient)

    sessions = await listed(client, headers, visit)
    answer = await walk_in(client, headers, visit, session_id)

    assert sessions.status_code == 200, sessions.text
    [offered] = sessions.json()["items"]
    assert offered["id"] == session_id
    assert (offered["department"], offered["doctor"], offered["title"]) == ("心血管内科", "王建国", "CHIEF")
    assert (offered["fee_fen"], offered["places_left"]) == (5000, 5)
    assert answer.status_code == 201, answer.text
    appointment = answer.json()
    assert (appointment["state"], appointment["session_id"], appointment["fee_fen"]) == (
        "HELD",
        session_id,
        5000,
    )
    bill = await client.get(f"/api/v1/bills/{appointment['bill_id']}", headers=patient.headers)
    assert bill.status_code == 200, bill.text  # the patient's own bill: their app shows it too
    assert (bill.json()["order_type"], bill.json()["state"], bill.json()["total_fen"]) == (
        "REG",
        "CREATED",
        5000,
    )
    me = (await client.get("/api/v1/me", headers=patient.headers)).json()
    row = (
        await Appointment.select(Appointment.user_id)
        .where(Appointment.id == uuid.UUID(appointment["id"]))
        .first()
    )
    assert row == {"user_id": me["id"]}  # booked as the patient's own account
    assert (await listed(client, headers, visit)).json()["items"][0]["places_left"] == 4

    # Paid (here from the phone; at the kiosk by face), it is confirmed and the patient told.
    confirmed = await pay_fee(client, sandbox_http, patient, appointment, run_worker)
    assert (confirmed["state"], confirmed["queue_no"]) == ("CONFIRMED", 1)
    told = await Notification.select(Notification.user_id).where(
        Notification.template == "appointment_booked"
    )
    assert told == [{"user_id": me["id"]}]


async def test_a_repeat_with_the_same_key_answers_the_same_hold(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient)
    headers = await kiosk(client)
    body = {"visit_token": await face_check(client, sandbox_http, headers, patient), "session_id": session_id}
    once = {**headers, **key()}

    first = await client.post(APPOINTMENTS, json=body, headers=once)
    again = await client.post(APPOINTMENTS, json=body, headers=once)
    keyless = await client.post(APPOINTMENTS, json=body, headers=headers)

    assert first.status_code == again.status_code == 201, again.text
    assert first.json()["id"] == again.json()["id"]
    assert code(keyless) == "IDEMPOTENCY_KEY_REQUIRED"
    assert await Appointment.count() == 1


async def test_only_todays_open_sessions_with_places_that_have_not_ended_are_listed(
    client, sandbox_http, settings
):
    patient, other = [await insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(2)]
    await publish(
        client,
        schedule(
            [
                session("D001", capacity=1, code="FULL"),
                session("D001", period="AFTERNOON", start="14:00", end="17:00", code="LATER"),
                session("D002", code="ENDING"),
                session("D002", period="AFTERNOON", start="14:00", end="17:00", code="TOMORROW"),
            ]
        ),
    )
    full, later = (await session_ids(client, patient))["D001"]
    ending, tomorrow = (await session_ids(client, patient))["D002"]
    await held(client, other, full)  # its last place, booked from a phone
    await running_now(full)
    await running_now(later, started=timedelta(hours=-2), ends_in=timedelta(hours=5))  # not begun yet
    await running_now(ending, ends_in=timedelta(minutes=1))
    headers = await kiosk(client)
    visit = await face_check(client, sandbox_http, headers, patient)

    sessions = await listed(client, headers, visit)
    on_full = await walk_in(client, headers, visit, full)
    on_ending = await walk_in(client, headers, visit, ending)
    on_tomorrow = await walk_in(client, headers, visit, tomorrow)

    assert [s["id"] for s in sessions.json()["items"]] == [later]
    assert (on_full.status_code, code(on_full)) == (409, "SESSION_FULL")
    assert (on_ending.status_code, code(on_ending)) == (409, "SESSION_CLOSED")
    assert on_tomorrow.status_code == 201, on_tomorrow.text  # not offered, but the rules allow it
    assert (await ClinicSession.select(ClinicSession.booked).where(ClinicSession.id == full).first()) == {
        "booked": 1
    }


async def test_a_session_under_way_takes_walk_ins_though_phones_can_no_longer_book_it(
    client, sandbox_http, settings
):
    patient, phone = [await insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(2)]
    session_id = await today(client, patient)
    headers = await kiosk(client)
    visit = await face_check(client, sandbox_http, headers, patient)

    at_the_kiosk = await walk_in(client, headers, visit, session_id)
    from_a_phone = await book(client, phone, session_id)

    assert at_the_kiosk.status_code == 201, at_the_kiosk.text
    expires_at = datetime.fromisoformat(at_the_kiosk.json()["expires_at"])
    assert expires_at - datetime.now(UTC) < timedelta(seconds=settings.booking.hold_seconds + 5)
    assert code(from_a_phone) == "SESSION_CLOSED"


async def test_one_appointment_per_doctor_and_day_counts_the_phones_and_the_kiosks(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    await publish(
        client,
        schedule(
            [
                session("D001"),
                session("D001", period="AFTERNOON", start="14:00", end="17:00"),
                session("D002"),
            ]
        ),
    )
    found = await session_ids(client, patient)
    (morning, afternoon), (attending,) = found["D001"], found["D002"]
    await held(client, patient, morning)  # from the phone, the day before
    for session_id in (morning, afternoon, attending):
        await running_now(session_id)
    headers = await kiosk(client)
    visit = await face_check(client, sandbox_http, headers, patient)

    same_session = await walk_in(client, headers, visit, morning)
    same_doctor = await walk_in(client, headers, visit, afternoon)
    another_doctor = await walk_in(client, headers, visit, attending)
    again = await walk_in(client, headers, visit, attending)

    assert [code(same_session), code(same_doctor)] == ["APPOINTMENT_DUPLICATE"] * 2
    assert another_doctor.status_code == 201, another_doctor.text
    assert code(again) == "APPOINTMENT_DUPLICATE"
    assert await Appointment.count() == 2


async def test_a_kiosk_sees_and_books_only_its_own_institutions_sessions(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient)
    shanghai = await kiosk(client, "H31010001")
    visit = await face_check(client, sandbox_http, shanghai, patient)

    sessions = await listed(client, shanghai, visit)
    answer = await walk_in(client, shanghai, visit, session_id)
    unknown = await walk_in(client, shanghai, visit, 2**31 - 1)

    assert (sessions.status_code, sessions.json()["items"]) == (200, [])
    assert (answer.status_code, code(answer)) == (404, "SESSION_NOT_FOUND")
    assert (unknown.status_code, code(unknown)) == (404, "SESSION_NOT_FOUND")
    assert await Appointment.count() == 0


async def test_a_visit_of_another_institution_or_one_ended_is_refused(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient)
    here, shanghai = await kiosk(client), await kiosk(client, "H31010001")
    elsewhere = await face_check(client, sandbox_http, shanghai, patient)
    ended = await face_check(client, sandbox_http, here, patient)
    await Visit.update({Visit.expires_at: datetime.now(UTC) - timedelta(seconds=1)}).where(
        Visit.token_hash == hashlib.sha256(ended.encode()).hexdigest()
    )  # four hours later

    answers = [
        await listed(client, here, elsewhere),
        await walk_in(client, here, elsewhere, session_id),
        await listed(client, here, ended),
        await walk_in(client, here, ended, session_id),
    ]

    assert [(a.status_code, code(a)) for a in answers] == [
        (403, "VISIT_WRONG_INSTITUTION"),
        (403, "VISIT_WRONG_INSTITUTION"),
        (404, "VISIT_NOT_FOUND"),
        (404, "VISIT_NOT_FOUND"),
    ]
    assert await Appointment.count() == 0


async def test_a_terminal_without_kiosk_pay_is_refused(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient)
    terminal = bearer(
        await partner_token(client, "terminal", ["ecert:decode", "bookings:check-in"], "H33010001")
    )
    visit = await face_check(client, sandbox_http, terminal, patient)

    answers = [await listed(client, terminal, visit), await walk_in(client, terminal, visit, session_id)]

    assert [(a.status_code, code(a)) for a in answers] == [(403, "INSUFFICIENT_SCOPE")] * 2
    assert answers[0].json()["error"]["detail"]["required_scope"] == "kiosk:pay"


async def test_the_list_is_paged_by_keyset(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    await publish(client, schedule([session("D001"), session("D002")]))
    ids = [i for ids in (await session_ids(client, patient)).values() for i in ids]
    for session_id in ids:
        await running_now(session_id)
    headers = await kiosk(client)
    visit = await face_check(client, sandbox_http, headers, patient)

    first = (await listed(client, headers, visit, limit=1)).json()
    second = (await listed(client, headers, visit, limit=1, after=first["next_after"])).json()
    forged = await listed(client, headers, visit, after="bm9wZQ")

    assert [first["items"][0]["id"], second["items"][0]["id"]] == sorted(ids)
    assert second["next_after"] is None
    assert (forged.status_code, code(forged)) == (422, "VALIDATION_ERROR")


async def test_walk_ins_and_phones_racing_for_the_last_places_never_overbook(client, sandbox_http, settings):
    walkers = await asyncio.gather(
        *(insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(12))
    )
    phones = await asyncio.gather(
        *(insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(4))
    )
    session_id = await one_session(client, walkers[0], capacity=3)
    await running_now(session_id, started=timedelta(hours=-1), ends_in=timedelta(hours=3))  # not begun
    headers = await kiosk(client)
    visits = await asyncio.gather(*(face_check(client, sandbox_http, headers, p) for p in walkers))

    answers = await asyncio.gather(
        *(walk_in(client, headers, v, session_id) for v in visits),
        *(book(client, p, session_id) for p in phones),
    )

    codes = [a.status_code if a.status_code == 201 else code(a) for a in answers]
    assert sorted(map(str, codes)) == ["201"] * 3 + ["SESSION_FULL"] * 13
    row = await ClinicSession.select(ClinicSession.booked).where(ClinicSession.id == session_id).first()
    assert row == {"booked": 3}
    assert await Appointment.count() == 3
    assert (await listed(client, headers, visits[0])).json()["items"] == []
    assert {r["state"] for r in await Appointment.select(Appointment.state)} == {"HELD"}
