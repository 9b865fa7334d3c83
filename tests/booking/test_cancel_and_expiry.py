"""A hold ends with its bill: unpaid at expiry it frees its place; paid at the last moment it is
kept. Cancelling frees the place too, refunding a paid fee, until the cut-off."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from backend.billing import cash
from backend.billing.jobs import sweep_bills
from backend.billing.tables import Bill, Refund
from backend.booking.tables import Appointment
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from tests.billing.factories import his_headers, insured_patient, pay, payer_pays, post_notification, refund
from tests.booking.arrange import (
    CHINA,
    book,
    cancel,
    expire_now,
    held,
    one_session,
    pay_fee,
    places_left,
    show,
)


async def test_an_unpaid_hold_expires_with_its_bill_and_its_place_is_free_again(
    client, sandbox_http, settings, runtime
):
    first, second = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, first, capacity=1)
    appointment = await held(client, first, session_id)
    assert (await book(client, second, session_id)).json()["error"]["code"] == "SESSION_FULL"

    await expire_now(appointment["id"])
    assert await cash.expire(runtime, uuid.UUID(appointment["bill_id"])) == "closed"

    expired = await show(client, first, appointment["id"])
    assert (expired["state"], expired["ended_reason"]) == ("EXPIRED", "expired unpaid")
    assert await places_left(client, first, session_id) == 1
    assert (await book(client, second, session_id)).status_code == 201
    assert await cash.expire(runtime, uuid.UUID(appointment["bill_id"])) == "already CLOSED"  # a repeat


async def test_the_bill_sweeper_expires_a_hold_whose_job_was_lost(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=2)
    appointment = await held(client, patient, session_id)
    await runtime.redis.flushdb()  # the deferred expiry job is lost
    await expire_now(appointment["id"])

    assert await sweep_bills(runtime) == 1
    await run_worker()

    assert (await show(client, patient, appointment["id"]))["state"] == "EXPIRED"
    assert await places_left(client, patient, session_id) == 2


async def test_a_fee_paid_at_the_last_moment_keeps_the_place_though_the_expiry_runs(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=1)
    appointment = await held(client, patient, session_id)
    started = await pay(
        client, patient, appointment["bill_id"], cash_method="wechat", use_personal_account=False
    )
    assert started.json()["state"] == "PAYING"
    # The patient pays in WeChat's sheet; WeChat's notification is late; the window passes.
    await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    await expire_now(appointment["id"])

    outcome = await cash.expire(runtime, uuid.UUID(appointment["bill_id"]))

    assert outcome == "paid"  # the expiry asked the channel first
    kept = await show(client, patient, appointment["id"])
    assert (kept["state"], kept["queue_no"]) == ("CONFIRMED", 1)
    assert await places_left(client, patient, session_id) == 0


async def test_payment_racing_expiry_ends_one_way_only(client, sandbox_http, settings, runtime, run_worker):
    """The channel's notification and the expiry job at the same moment, many times over: each
    hold is confirmed (the money arrived) or, never both, expired."""
    patients = [await insured_patient(client, sandbox_http, settings) for _ in range(6)]
    session_id = await one_session(client, patients[0], capacity=6)
    holds = [await held(client, p, session_id) for p in patients]
    notifications = []
    for patient, appointment in zip(patients, holds, strict=True):
        started = await pay(
            client, patient, appointment["bill_id"], cash_method="wechat", use_personal_account=False
        )
        notifications.append(await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"]))
        await expire_now(appointment["id"])

    await asyncio.gather(
        *(post_notification(client, "wechat", n) for n in notifications),
        *(cash.expire(runtime, uuid.UUID(a["bill_id"])) for a in holds),
    )
    await run_worker()

    states = [(await show(client, p, a["id"]))["state"] for p, a in zip(patients, holds, strict=True)]
    assert states == ["CONFIRMED"] * 6  # every payment arrived, so every place is kept
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 0
    assert await places_left(client, patients[0], session_id) == 0


async def test_cancelling_a_hold_closes_its_bill_and_frees_the_place(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=1)
    appointment = await held(client, patient, session_id)

    answer = await cancel(client, patient, appointment["id"])
    again = await cancel(client, patient, appointment["id"])

    assert answer.status_code == again.status_code == 200
    assert (answer.json()["state"], answer.json()["ended_reason"]) == (
        "CANCELLED",
        "cancelled by the patient",
    )
    bill = await Bill.select(Bill.state).where(Bill.id == uuid.UUID(appointment["bill_id"])).first()
    assert bill["state"] == "CLOSED"
    assert await places_left(client, patient, session_id) == 1
    paying = await pay(client, patient, appointment["bill_id"], cash_method="wechat")
    assert paying.status_code == 409 and paying.json()["error"]["code"] == "BILL_NOT_PAYABLE"


async def test_cancelling_a_confirmed_appointment_refunds_its_fee_in_full(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=1)
    appointment = await held(client, patient, session_id)
    await pay_fee(client, sandbox_http, patient, appointment, run_worker)

    answer = await cancel(client, patient, appointment["id"])
    refund = await Refund.select().first()
    # WeChat Pay accepts the refund, then says it succeeded by its refund notification.
    note = await sandbox_http.get(f"/_sandbox/pay/wechat/refunds/{refund['out_refund_no']}/notification")
    assert (await post_notification(client, "wechat", note.json())).status_code == 204
    await run_worker()

    assert answer.status_code == 200 and answer.json()["state"] == "CANCELLED"
    refund = await Refund.select().first()
    assert (refund["amount_fen"], refund["state"], refund["requested_by"]) == (
        5000,
        "SUCCEEDED",
        "domain:booking",
    )
    order = (
        await sandbox_http.get(f"/_sandbox/pay/wechat/orders/MP{uuid.UUID(appointment['bill_id']).hex[:30]}")
    ).json()
    assert order["refunded_fen"] == refund["cash_fen"]
    bill = (await client.get(f"/api/v1/bills/{appointment['bill_id']}", headers=patient.headers)).json()
    assert (bill["state"], bill["refunded_fen"]) == ("REFUNDED", 5000)
    assert await places_left(client, patient, session_id) == 1
    templates = {n["template"] for n in await Notification.select(Notification.template)}
    assert {"appointment_booked", "appointment_cancelled", "refund_succeeded"} <= templates


async def test_a_confirmed_appointment_is_not_cancelled_online_after_the_cut_off(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    soon = datetime.now(UTC) + timedelta(minutes=settings.booking.cancel_cutoff_minutes - 30)
    soon_local = soon.astimezone(CHINA)
    if soon_local.strftime("%H:%M") == "23:59":  # a session needs a minute before the day ends
        soon_local -= timedelta(minutes=1)
    end = "23:59"
    session_id = await one_session(
        client, patient, day=soon_local.date(), start=soon_local.strftime("%H:%M"), end=end, capacity=2
    )
    appointment = await held(client, patient, session_id)
    await pay_fee(client, sandbox_http, patient, appointment, run_worker)

    answer = await cancel(client, patient, appointment["id"])

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "APPOINTMENT_CANCEL_TOO_LATE"
    assert (await show(client, patient, appointment["id"]))["state"] == "CONFIRMED"
    assert await Refund.count() == 0


async def test_a_hold_whose_fee_is_being_paid_cannot_be_cancelled_until_the_payment_ends(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=1)
    appointment = await held(client, patient, session_id)
    await pay(client, patient, appointment["bill_id"], cash_method="wechat", use_personal_account=False)

    answer = await cancel(client, patient, appointment["id"])

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "APPOINTMENT_PAYMENT_IN_PROGRESS"
    assert (await show(client, patient, appointment["id"]))["state"] == "HELD"


async def test_cancel_racing_expiry_frees_the_place_once(client, sandbox_http, settings, runtime):
    patients = [await insured_patient(client, sandbox_http, settings) for _ in range(5)]
    session_id = await one_session(client, patients[0], capacity=5)
    holds = [await held(client, p, session_id) for p in patients]
    for appointment in holds:
        await expire_now(appointment["id"])

    await asyncio.gather(
        *(cancel(client, p, a["id"]) for p, a in zip(patients, holds, strict=True)),
        *(cash.expire(runtime, uuid.UUID(a["bill_id"])) for a in holds),
    )

    states = {(await show(client, p, a["id"]))["state"] for p, a in zip(patients, holds, strict=True)}
    assert states <= {"CANCELLED", "EXPIRED"}
    assert await places_left(client, patients[0], session_id) == 5
    assert await Appointment.count().where(Appointment.state.is_in(["HELD"])) == 0


async def test_a_fee_paid_from_the_personal_account_is_confirmed_at_once_and_given_back_on_cancel(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    session_id = await one_session(client, patient, capacity=2)
    appointment = await held(client, patient, session_id)

    paid = await pay(client, patient, appointment["bill_id"], use_personal_account=True)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["state"], paid.json()["cash_fen"]) == ("PAID", 0)
    assert (await show(client, patient, appointment["id"]))["state"] == "CONFIRMED"

    answer = await cancel(client, patient, appointment["id"])

    assert answer.status_code == 200 and answer.json()["state"] == "CANCELLED"
    refund = await Refund.select(Refund.state, Refund.cash_fen, Refund.amount_fen).first()
    assert refund == {"state": "SUCCEEDED", "cash_fen": 0, "amount_fen": 5000}
    assert await places_left(client, patient, session_id) == 2


async def test_a_hospital_cannot_refund_a_registration_fee_behind_its_appointment(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, patient, capacity=2)
    appointment = await pay_fee(
        client, sandbox_http, patient, await held(client, patient, session_id), run_worker
    )

    answer = await refund(client, await his_headers(client), appointment["bill_id"])

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "BILL_NOT_REFUNDABLE"
    assert answer.json()["error"]["detail"]["created_by"] == "booking"
    assert await Refund.count() == 0
    assert (await show(client, patient, appointment["id"]))["state"] == "CONFIRMED"
