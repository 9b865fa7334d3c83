"""At the hospital: check-in with the visit the patient's QR code opened; no-shows after a session;
too many no-shows bar online booking when a hospital sets a limit; the evening-before reminder."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from backend.booking import attendance, reminders
from backend.booking.tables import Appointment
from backend.notify.tables import Notification
from tests.billing.factories import insured_patient, visit_token
from tests.booking.arrange import book, held, one_session, pay_fee, running_now, show, terminal
from tests.helpers import bearer, terminal_token


async def test_a_terminal_checks_a_patient_in_with_the_visit_their_qr_code_opened(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=5)
    appointment = await pay_fee(
        client, sandbox_http, patient, await held(client, patient, session_id), run_worker
    )
    await running_now(session_id)
    token = await visit_token(client, patient)
    headers = await terminal(client)

    answer = await client.post(
        f"/api/v1/partner/appointments/{appointment['id']}/check-in",
        json={"visit_token": token},
        headers=headers,
    )
    again = await client.post(
        f"/api/v1/partner/appointments/{appointment['id']}/check-in",
        json={"visit_token": token},
        headers=headers,
    )

    assert answer.status_code == again.status_code == 200, answer.text
    assert answer.json()["state"] == "CHECKED_IN"
    assert await attendance.mark_no_shows(runtime) == 0  # checked in: never a no-show


async def test_check_in_is_refused_for_another_patient_another_hospital_or_an_unpaid_hold(
    client, sandbox_http, settings, run_worker
):
    patient, other = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, patient, capacity=5)
    unpaid = await held(client, other, session_id)
    appointment = await pay_fee(
        client, sandbox_http, patient, await held(client, patient, session_id), run_worker
    )
    await running_now(session_id)
    headers = await terminal(client)
    url = f"/api/v1/partner/appointments/{appointment['id']}/check-in"

    wrong_patient = await client.post(
        url, json={"visit_token": await visit_token(client, other)}, headers=headers
    )
    elsewhere = await client.post(
        url,
        json={"visit_token": await visit_token(client, patient, "H31010001")},
        headers=await terminal(client, "H31010001"),
    )
    not_paid = await client.post(
        f"/api/v1/partner/appointments/{unpaid['id']}/check-in",
        json={"visit_token": await visit_token(client, other)},
        headers=headers,
    )
    no_scope = await client.post(url, json={"visit_token": "x" * 20}, headers=await _decoder_only(client))
    bad_token = await client.post(url, json={"visit_token": "x" * 20}, headers=headers)

    assert (
        wrong_patient.status_code == 409 and wrong_patient.json()["error"]["code"] == "CHECK_IN_WRONG_PATIENT"
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "APPOINTMENT_NOT_FOUND"
    assert not_paid.status_code == 409 and not_paid.json()["error"]["code"] == "APPOINTMENT_NOT_PAID"
    assert no_scope.status_code == 403
    assert bad_token.status_code == 404 and bad_token.json()["error"]["code"] == "VISIT_NOT_FOUND"
    assert (await show(client, patient, appointment["id"]))["state"] == "CONFIRMED"


async def _decoder_only(client):
    return bearer(await terminal_token(client))


async def test_unchecked_appointments_become_no_shows_and_enough_of_them_bar_booking(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=5)
    appointment = await pay_fee(
        client, sandbox_http, patient, await held(client, patient, session_id), run_worker
    )
    later = await one_session(client, patient, capacity=5, doctor="D002")
    await running_now(session_id, started=timedelta(hours=2), ends_in=-timedelta(minutes=1))

    assert await attendance.mark_no_shows(runtime) == 1
    assert await attendance.mark_no_shows(runtime) == 0

    assert (await show(client, patient, appointment["id"]))["state"] == "NO_SHOW"
    listed = (await client.get("/api/v1/appointments", headers=patient.headers)).json()
    assert listed["no_shows"] == 1 and listed["barred"] is False
    barring = msgspec.structs.replace(settings.booking, no_show_limit=1)
    runtime.settings = msgspec.structs.replace(settings, booking=barring)
    try:
        refused = await book(client, patient, later)
        listed = (await client.get("/api/v1/appointments", headers=patient.headers)).json()
    finally:
        runtime.settings = settings
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "BOOKING_BARRED"
    assert listed["barred"] is True


async def test_the_evening_reminder_reaches_each_confirmed_appointment_of_tomorrow_once(
    client, sandbox_http, settings, runtime, run_worker
):
    patients = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    session_id = await one_session(client, patients[0], capacity=5, slot_minutes=30)
    holds = [await held(client, p, session_id) for p in patients]
    for patient, hold in zip(patients[:2], holds, strict=False):
        await pay_fee(client, sandbox_http, patient, hold, run_worker)

    assert await reminders.remind(runtime) == 2
    assert await reminders.remind(runtime) == 0  # a second run (a catch-up hour) sends nothing again
    await run_worker()

    sent = await Notification.select(Notification.params, Notification.status).where(
        Notification.template == "appointment_reminder"
    )
    # Delivered to the inbox (these patients granted no subscribe messages).
    assert len(sent) == 2 and {n["status"] for n in sent} == {"inbox_only"}
    starts = sorted(msgspec.json.decode(n["params"])["starts_at"][11:16] for n in sent)
    assert starts == ["08:00", "08:30"]  # each at its own slot's time
    assert await Appointment.count().where(Appointment.reminded_at.is_null()) == 1  # the unpaid hold
