"""停诊: a hospital cancels a session; its appointments are cancelled, the paid ones refunded, and
every patient told; its waitlist is closed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from backend.billing import cash
from backend.billing.tables import Bill, Refund
from backend.booking.jobs import sweep_booking
from backend.booking.tables import Appointment, ClinicSession, WaitlistEntry
from backend.notify.tables import Notification
from tests.billing.factories import insured_patient, pay, payer_pays, post_notification, visit_token
from tests.booking.arrange import (
    cancel,
    held,
    his,
    pay_fee,
    places_left,
    publish,
    running_now,
    schedule,
    session,
    session_ids,
    show,
    terminal,
)
from tests.helpers import inject_fault


async def test_a_cancelled_session_refunds_its_appointments_and_tells_their_patients(
    client, sandbox_http, settings, run_worker
):
    paid, holding, waiting = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    body = schedule([session("D001", capacity=2, code="STOP")])
    await publish(client, body)
    session_id = (await session_ids(client, paid))["D001"][0]
    confirmed = await pay_fee(client, sandbox_http, paid, await held(client, paid, session_id), run_worker)
    hold = await held(client, holding, session_id)
    await client.post(f"/api/v1/sessions/{session_id}/waitlist", headers=waiting.headers)

    body["sessions"][0].update(cancelled=True, cancel_reason="医生临时停诊")
    result = await publish(client, body)
    await run_worker()

    assert result["sessions_cancelled"] == 1
    cancelled = await show(client, paid, confirmed["id"])
    assert (cancelled["state"], cancelled["ended_reason"]) == ("CANCELLED", "the session was cancelled")
    assert (await show(client, holding, hold["id"]))["state"] == "CANCELLED"
    refund = await Refund.select().first()
    assert (refund["amount_fen"], refund["bill_id"]) == (5000, uuid.UUID(confirmed["bill_id"]))
    held_bill = await Bill.select(Bill.state).where(Bill.id == uuid.UUID(hold["bill_id"])).first()
    assert held_bill["state"] == "CLOSED"
    told = await Notification.select(Notification.params).where(
        Notification.template == "appointment_cancelled"
    )
    assert [json.loads(n["params"])["reason"] for n in told] == ["医生临时停诊"] * 2  # both patients
    assert await WaitlistEntry.count().where(WaitlistEntry.state == "CLOSED") == 1
    assert await places_left(client, paid, session_id) == 2
    again = await publish(client, body)
    assert (again["sessions_cancelled"], again["sessions_updated"]) == (0, 0)  # a repeat changes nothing
    reopened = await client.put(
        "/api/v1/partner/schedules",
        json={**body, "sessions": [{**body["sessions"][0], "cancelled": False}]},
        headers=await his(client),
    )
    assert reopened.status_code == 409 and reopened.json()["error"]["code"] == "SESSION_CANCELLED"


async def test_a_fee_being_paid_as_the_session_is_cancelled_is_refunded_once_it_arrives(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    body = schedule([session("D001", capacity=2, code="LATE")])
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    hold = await held(client, patient, session_id)
    started = await pay(client, patient, hold["bill_id"], cash_method="wechat", use_personal_account=False)

    body["sessions"][0]["cancelled"] = True
    await publish(client, body)
    await run_worker()
    assert (await show(client, patient, hold["id"]))["state"] == "HELD"  # left to its payment

    notification = await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    await post_notification(client, "wechat", notification)
    await run_worker()

    assert (await show(client, patient, hold["id"]))["state"] == "CANCELLED"
    assert await Refund.count() == 1
    assert await places_left(client, patient, session_id) == 2


async def test_the_sweeper_finishes_a_cancellation_whose_job_was_lost(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    body = schedule([session("D001", capacity=2, code="LOST")])
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    hold = await held(client, patient, session_id)
    body["sessions"][0]["cancelled"] = True
    await publish(client, body)
    await runtime.redis.flushdb()  # the outbox message's job is lost

    assert await sweep_booking(runtime) == 1
    await run_worker()

    assert (await show(client, patient, hold["id"]))["state"] == "CANCELLED"
    assert await sweep_booking(runtime) == 0
    assert await Appointment.count().where(Appointment.state == "HELD") == 0
    assert await cash.expire(runtime, uuid.UUID(hold["bill_id"])) in ("not yet", "already CLOSED")


async def test_a_session_cancelled_after_check_in_refunds_the_checked_in_too_and_stops_check_in(
    client, sandbox_http, settings, run_worker
):
    seen, waiting = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    body = schedule([session("D001", capacity=3, code="MIDWAY")])
    await publish(client, body)
    session_id = (await session_ids(client, seen))["D001"][0]
    first = await pay_fee(client, sandbox_http, seen, await held(client, seen, session_id), run_worker)
    second = await pay_fee(client, sandbox_http, waiting, await held(client, waiting, session_id), run_worker)
    await running_now(session_id)
    desk = await terminal(client)
    url = "/api/v1/partner/appointments/{}/check-in"
    checked = await client.post(
        url.format(first["id"]), json={"visit_token": await visit_token(client, seen)}, headers=desk
    )
    assert checked.json()["state"] == "CHECKED_IN"

    body["sessions"][0].update(cancelled=True, capacity=0)  # a hospital system zeroes the places of a 停诊
    assert (await publish(client, body))["sessions_cancelled"] == 1
    late = await client.post(
        url.format(second["id"]), json={"visit_token": await visit_token(client, waiting)}, headers=desk
    )
    await run_worker()

    assert late.status_code == 409 and late.json()["error"]["code"] == "SESSION_CLOSED"
    assert {(await show(client, p, a["id"]))["state"] for p, a in ((seen, first), (waiting, second))} == {
        "CANCELLED"
    }
    assert await Refund.count() == 2
    row = await ClinicSession.select(ClinicSession.booked, ClinicSession.capacity, ClinicSession.state).where(
        ClinicSession.id == session_id
    )
    assert row == [{"booked": 0, "capacity": 2, "state": "CANCELLED"}]  # it kept the 2 places it held


async def test_a_session_that_is_over_cannot_be_cancelled_once_it_had_patients(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    body = schedule([session("D001", capacity=3, code="DONE")])
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    await pay_fee(client, sandbox_http, patient, await held(client, patient, session_id), run_worker)
    await running_now(session_id, started=timedelta(hours=4), ends_in=-timedelta(hours=1))
    body["sessions"][0]["cancelled"] = True

    answer = await client.put("/api/v1/partner/schedules", json=body, headers=await his(client))

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "SESSION_ENDED"
    assert answer.json()["error"]["detail"]["field"] == "sessions[0].cancelled"
    assert (await ClinicSession.select(ClinicSession.state).first())["state"] == "OPEN"


async def test_a_refund_the_channel_refuses_is_asked_for_again_by_the_sweeper(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    body = schedule([session("D001", capacity=2, code="REFUSE")])
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    appointment = await pay_fee(
        client, sandbox_http, patient, await held(client, patient, session_id), run_worker
    )
    await inject_fault(sandbox_http, partner="wechatpay", api="refund", times=1, code="NOT_ENOUGH")

    answer = await cancel(client, patient, appointment["id"])
    assert answer.status_code == 200 and answer.json()["state"] == "CANCELLED"
    assert [r["state"] for r in await Refund.select(Refund.state)] == ["REJECTED"]
    assert await sweep_booking(runtime) == 0  # not again within the hour
    await Refund.update({Refund.created_at: datetime.now(UTC) - timedelta(hours=2)}).where(
        Refund.id.is_not_null()
    )

    assert await sweep_booking(runtime) == 1

    states = sorted(r["state"] for r in await Refund.select(Refund.state))
    assert states in (["PROCESSING", "REJECTED"], ["REJECTED", "SUCCEEDED"])
    assert await sweep_booking(runtime) == 0
