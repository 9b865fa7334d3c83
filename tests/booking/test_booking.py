"""Holding a place, paying its fee through the bill flow, and every refusal on the way."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from backend.auth.service import Patient
from backend.billing.tables import Bill
from backend.booking import holds
from backend.booking.schemas import AppointmentCreate
from backend.booking.tables import Appointment, ClinicSession
from backend.notify.tables import Notification
from tests.billing.factories import insured_patient, key
from tests.booking.arrange import (
    book,
    china_today,
    held,
    one_session,
    pay_fee,
    places_left,
    publish,
    schedule,
    session,
    session_ids,
    show,
)
from tests.helpers import bearer, login


async def test_a_held_place_paid_through_the_bill_becomes_a_confirmed_appointment_with_a_queue_number(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=3)

    appointment = await held(client, patient, session_id)

    assert appointment["fee_fen"] == 5000 and appointment["queue_no"] is None
    assert appointment["doctor"] == "王建国" and appointment["department"] == "心血管内科"
    bill = (await client.get(f"/api/v1/bills/{appointment['bill_id']}", headers=patient.headers)).json()
    assert (bill["order_type"], bill["total_fen"], bill["state"]) == ("REG", 5000, "CREATED")
    assert bill["items"][0]["name"] == "主任医师诊查费"
    assert await places_left(client, patient, session_id) == 2

    confirmed = await pay_fee(client, sandbox_http, patient, appointment, run_worker)

    assert (confirmed["state"], confirmed["queue_no"], confirmed["expires_at"]) == ("CONFIRMED", 1, None)
    assert await places_left(client, patient, session_id) == 2
    notices = await Notification.select(Notification.template).where(
        Notification.template == "appointment_booked"
    )
    assert len(notices) == 1
    listed = (await client.get("/api/v1/appointments", headers=patient.headers)).json()
    assert [a["id"] for a in listed["items"]] == [appointment["id"]]
    assert (listed["no_shows"], listed["barred"]) == (0, False)


async def test_queue_numbers_follow_the_order_of_payment(client, sandbox_http, settings, run_worker):
    patients = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    session_id = await one_session(client, patients[0], capacity=5)
    holds = [await held(client, p, session_id) for p in patients]

    for patient, appointment in reversed(list(zip(patients, holds, strict=True))):
        await pay_fee(client, sandbox_http, patient, appointment, run_worker)

    numbers = [(await show(client, p, a["id"]))["queue_no"] for p, a in zip(patients, holds, strict=True)]
    assert numbers == [3, 2, 1]


async def test_numbered_slots_are_chosen_or_given_the_first_free_one(
    client, sandbox_http, settings, run_worker
):
    first, second, third = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    session_id = await one_session(client, first, capacity=12, slot_minutes=20)

    chosen = await held(client, first, session_id, slot=5)
    taken = await book(client, second, session_id, slot=5)
    given = await held(client, third, session_id)

    assert chosen["slot"] == 5 and given["slot"] == 1
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "SLOT_TAKEN"
    assert taken.json()["error"]["detail"]["field"] == "slot"
    day = china_today() + timedelta(days=1)
    assert chosen["starts_at"] == f"{day.isoformat()}T09:20:00+08:00"  # 08:00 + 4 x 20 minutes
    confirmed = await pay_fee(client, sandbox_http, first, chosen, run_worker)
    assert confirmed["queue_no"] == 5
    beyond = await book(client, second, session_id, slot=13)
    assert beyond.status_code == 422 and beyond.json()["error"]["detail"]["field"] == "slot"


async def test_a_slot_asked_of_a_session_without_numbered_slots_is_refused(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=5)

    answer = await book(client, patient, session_id, slot=1)

    assert answer.status_code == 422 and answer.json()["error"]["detail"]["field"] == "slot"
    assert await Appointment.count() == 0 and await Bill.count() == 0


async def test_one_active_appointment_per_patient_per_doctor_per_day(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    day = china_today() + timedelta(days=2)
    await publish(
        client,
        schedule(
            [
                session("D001", day, code="AM"),
                session("D001", day, code="PM", period="AFTERNOON", start="14:00", end="17:00"),
                session("D002", day, code="OTHER"),
            ]
        ),
    )
    sessions = await session_ids(client, patient, day)
    morning, afternoon = sessions["D001"]
    await held(client, patient, morning)

    again = await book(client, patient, afternoon)
    other_doctor = await book(client, patient, sessions["D002"][0])

    assert again.status_code == 409 and again.json()["error"]["code"] == "APPOINTMENT_DUPLICATE"
    assert other_doctor.status_code == 201
    assert await places_left(client, patient, afternoon) == 30


async def test_the_same_patient_racing_twice_for_one_doctor_gets_one_place(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    day = china_today() + timedelta(days=2)
    await publish(
        client,
        schedule(
            [
                session("D001", day, code="AM"),
                session("D001", day, code="PM", period="AFTERNOON", start="14:00", end="17:00"),
            ]
        ),
    )
    morning, afternoon = (await session_ids(client, patient, day))["D001"]

    answers = await asyncio.gather(*(book(client, patient, s) for s in [morning, afternoon] * 4))

    codes = sorted(a.json()["error"]["code"] if a.status_code != 201 else "HELD" for a in answers)
    assert codes == ["APPOINTMENT_DUPLICATE"] * 7 + ["HELD"]
    booked = await ClinicSession.select(ClinicSession.booked).order_by(ClinicSession.id)
    assert sorted(r["booked"] for r in booked) == [0, 1]


async def test_a_full_session_says_so_and_points_to_its_waitlist(client, sandbox_http, settings):
    first, second = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, first, capacity=1)
    await held(client, first, session_id)

    answer = await book(client, second, session_id)

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "SESSION_FULL"
    assert error["detail"]["waitlist"] == f"/api/v1/sessions/{session_id}/waitlist"
    assert await Appointment.count() == 1 and await Bill.count() == 1


async def test_booking_opens_days_ahead_and_closes_when_the_session_starts(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    ahead = settings.booking.open_days + 1
    far = china_today() + timedelta(days=ahead)
    await publish(
        client,
        schedule(
            [session("D001", far, code="FAR"), session("D002", china_today(), code="NOW", start="00:00")]
        ),
    )
    found = await session_ids(client, patient)

    early = await book(client, patient, found["D001"][0])
    late = await book(client, patient, found["D002"][0])

    assert early.status_code == 409 and early.json()["error"]["code"] == "BOOKING_NOT_OPEN"
    assert early.json()["error"]["detail"]["opens_at"].startswith(
        (far - timedelta(days=settings.booking.open_days)).isoformat()
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "SESSION_CLOSED"
    assert await Appointment.count() == 0


async def test_a_cancelled_session_or_an_unknown_one_is_refused(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    body = schedule([session("D001", code="X1")])
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    body["sessions"][0]["cancelled"] = True
    await publish(client, body)

    cancelled = await book(client, patient, session_id)
    unknown = await book(client, patient, session_id + 1000)
    not_an_id = await client.post(
        "/api/v1/appointments", json={"session_id": "1"}, headers={**patient.headers, **key()}
    )

    assert cancelled.status_code == 409 and cancelled.json()["error"]["code"] == "SESSION_CLOSED"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert not_an_id.status_code == 400 and not_an_id.json()["error"]["detail"]["field"] == "session_id"


async def test_booking_needs_an_idempotency_key_and_a_repeat_answers_the_same_hold(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=5)
    body = {"session_id": session_id}

    without = await client.post("/api/v1/appointments", json=body, headers=patient.headers)
    headers = {**patient.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/api/v1/appointments", json=body, headers=headers)
    repeat = await client.post("/api/v1/appointments", json=body, headers=headers)

    assert without.status_code == 400 and without.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert first.status_code == repeat.status_code == 201
    assert repeat.json()["id"] == first.json()["id"]
    assert await places_left(client, patient, session_id) == 4


async def test_another_patients_appointment_is_not_found(client, sandbox_http, settings):
    owner, stranger = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, owner)
    appointment = await held(client, owner, session_id)

    seen = await client.get(f"/api/v1/appointments/{appointment['id']}", headers=stranger.headers)
    cancelled = await client.post(
        f"/api/v1/appointments/{appointment['id']}/cancel", headers={**stranger.headers, **key()}
    )

    assert seen.status_code == cancelled.status_code == 404
    assert seen.json()["error"]["code"] == "APPOINTMENT_NOT_FOUND"
    assert (await client.get("/api/v1/appointments", headers=stranger.headers)).json()["items"] == []
    assert (await show(client, owner, appointment["id"]))["state"] == "HELD"


async def test_booking_without_an_e_certificate_is_refused(client, sandbox_http, settings):
    owner = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, owner)
    tokens = await login(client, sandbox_http, settings, "wechat", f"nobody-{uuid.uuid4().hex[:6]}")
    answer = await client.post(
        "/api/v1/appointments",
        json={"session_id": session_id},
        headers={**bearer(tokens["access_token"]), **key()},
    )

    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ECERT_NOT_BOUND"


async def test_a_booking_retried_after_a_failure_finds_the_hold_it_made(
    client, sandbox_http, settings, runtime
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=5)
    me = (await client.get("/api/v1/me", headers=patient.headers)).json()
    who = Patient(user_id=me["id"], channel="wechat")
    request = AppointmentCreate(session_id=session_id)

    # The first attempt committed its hold, then its answer was lost (a 5xx frees the key).
    first = await holds.book(runtime, who, request, request_key="retry-key")
    again = await holds.book(runtime, who, request, request_key="retry-key")

    assert again.id == first.id
    assert await Appointment.count() == 1 and await places_left(client, patient, session_id) == 4
