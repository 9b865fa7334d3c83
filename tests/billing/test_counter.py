"""The hospital's counter as a cash method: the patient settles the fund's part on the phone and pays
the cash part at the counter, whose cashier records it; refunds are handed back there at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from backend.billing import cash, jobs
from backend.billing.tables import Bill, CashPayment, InsuredYearUsage, Refund
from backend.booking.tables import Appointment
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    key,
    new_bill,
    pay,
    payer_pays,
    post_notification,
    refund,
)
from tests.booking.arrange import cancel, held, one_session, show

COUNTER_CASH = ledger.counter_cash("H33010001")
RECEIVABLE = ledger.hospital_receivable("H33010001")


async def at_the_counter(client, sandbox_http, settings, channel="wechat"):
    """A resident (no personal account) who chose to pay a bill's cash part at the counter."""
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident", channel=channel)
    his = await his_headers(client)
    bill = await new_bill(client, his, patient, WITH_CT)
    started = await pay(client, patient, bill["id"], cash_method="counter")
    assert started.status_code == 200, started.text
    return patient, his, bill, started.json()


async def cashier_records(client, his, bill_id, headers=None, **body):
    return await client.post(
        f"/api/v1/partner/bills/{bill_id}/counter-payment",
        json={"amount_fen": 55177, "receipt_no": "SF20261201-0001", "tender": "cash", **body},
        headers={**his, **(key() if headers is None else headers)},
    )


async def state(bill_id: str) -> str:
    return (await Bill.select(Bill.state).where(Bill.id == bill_id).first())["state"]


async def test_the_cash_part_waits_for_the_counter_and_the_cashiers_record_pays_the_bill(
    client, sandbox_http, settings, run_worker
):
    patient, his, bill, started = await at_the_counter(client, sandbox_http, settings)

    assert (started["state"], started["cash_method"]) == ("PAYING", "counter")
    assert (started["fund_fen"], started["cash_fen"]) == (17823, 55177)
    launch = started["launch"]
    assert (launch["bill_no"], launch["cash_fen"], launch["institution"]) == (
        bill["bill_no"],
        "55177",
        "杭州市第一人民医院",
    )
    assert "收费窗口" in launch["counter"] and launch["pay_before"]
    again = await pay(client, patient, bill["id"], cash_method="counter")  # the phone asks again
    assert again.json()["launch"] == launch
    assert await ledger.balance(RECEIVABLE) == 17823

    recorded = await cashier_records(client, his, bill["id"], tender="card")
    await run_worker()

    assert recorded.status_code == 201, recorded.text
    body = recorded.json()
    assert (body["state"], body["amount_fen"], body["receipt_no"], body["tender"]) == (
        "PAID",
        55177,
        "SF20261201-0001",
        "card",
    )
    assert body["out_trade_no"] == started["out_trade_no"]
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert (shown["state"], shown["cash_method"]) == ("PAID", "counter")
    assert await ledger.balance(COUNTER_CASH) == -55177
    assert await ledger.balance(RECEIVABLE) == 73000
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Notification.count().where(Notification.template == "payment_succeeded") == 1
    row = await CashPayment.select().first()
    assert (row["receipt_no"], row["tender"], row["state"]) == ("SF20261201-0001", "card", "PAID")

    # The same receipt again (a retry with a new key) answers the same, and moves nothing.
    repeat = await cashier_records(client, his, bill["id"], tender="card")
    replay = await cashier_records(client, his, bill["id"], headers={"Idempotency-Key": "k-1"}, tender="card")
    replayed = await cashier_records(
        client, his, bill["id"], headers={"Idempotency-Key": "k-1"}, tender="card"
    )
    assert (repeat.status_code, repeat.json()) == (201, body)
    assert replay.json() == body and replayed.headers["Idempotent-Replayed"] == "true"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Notification.count().where(Notification.template == "payment_succeeded") == 1


async def test_what_the_counter_cannot_record_is_refused_and_writes_nothing(
    client, sandbox_http, settings, run_worker
):
    _, his, bill, _ = await at_the_counter(client, sandbox_http, settings)
    _, _, other, _ = await at_the_counter(client, sandbox_http, settings)
    assert (await cashier_records(client, his, other["id"], receipt_no="R-OTHER")).status_code == 201
    by_channel = await insured_patient(client, sandbox_http, settings, insurance="resident")
    channel_bill = await new_bill(client, his, by_channel, WITH_CT)
    paying = (await pay(client, by_channel, channel_bill["id"], cash_method="wechat")).json()
    unpaid = await new_bill(client, his, by_channel, WITH_CT)

    refusals = [
        (await cashier_records(client, his, bill["id"], amount_fen=55176), 422, "COUNTER_AMOUNT_MISMATCH"),
        (await cashier_records(client, his, bill["id"], receipt_no="R-OTHER"), 409, "COUNTER_RECEIPT_USED"),
        (
            await cashier_records(client, await his_headers(client, "H31010001"), bill["id"]),
            404,
            "BILL_NOT_FOUND",
        ),
        (await cashier_records(client, his, channel_bill["id"]), 409, "CASH_NOT_AT_COUNTER"),
        (await cashier_records(client, his, unpaid["id"]), 409, "CASH_NOT_AT_COUNTER"),
        (await cashier_records(client, his, bill["id"], tender="cheque"), 400, "VALIDATION_ERROR"),
        (await cashier_records(client, his, bill["id"], receipt_no=""), 400, "VALIDATION_ERROR"),
        (await cashier_records(client, his, bill["id"], headers={}), 400, "IDEMPOTENCY_KEY_REQUIRED"),
    ]

    for answer, status, code in refusals:
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert refusals[0][0].json()["error"]["detail"] == {"field": "amount_fen", "cash_fen": 55177}
    assert refusals[1][0].json()["error"]["detail"]["field"] == "receipt_no"
    assert refusals[3][0].json()["error"]["detail"]["cash_method"] == "wechat"
    assert await state(bill["id"]) == "PAYING"
    assert await state(unpaid["id"]) == "CREATED"
    assert await CashPayment.count().where(CashPayment.receipt_no.is_not_null()) == 1
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await ledger.balance(COUNTER_CASH) == -55177

    # Paid through its channel after all: still not the counter's to record.
    note = await payer_pays(sandbox_http, "wechat", paying["out_trade_no"])
    assert (await post_notification(client, "wechat", note)).status_code == 204
    await run_worker()
    late = await cashier_records(client, his, channel_bill["id"], receipt_no="R-LATE")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "CASH_NOT_AT_COUNTER")


async def test_one_receipt_recorded_for_two_bills_at_once_pays_one(client, sandbox_http, settings):
    _, his, first, _ = await at_the_counter(client, sandbox_http, settings)
    _, _, second, _ = await at_the_counter(client, sandbox_http, settings)

    answers = await asyncio.gather(
        cashier_records(client, his, first["id"], receipt_no="R-RACE"),
        cashier_records(client, his, second["id"], receipt_no="R-RACE"),
    )

    assert sorted(a.status_code for a in answers) == [201, 409]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["error"]["code"] == "COUNTER_RECEIPT_USED"
    assert await Bill.count().where(Bill.state == "PAID") == 1


async def test_a_counter_payment_is_handed_back_at_the_counter_in_part_and_in_whole(
    client, sandbox_http, settings, run_worker
):
    patient, his, bill, _ = await at_the_counter(client, sandbox_http, settings)
    assert (await cashier_records(client, his, bill["id"])).status_code == 201

    part = await refund(client, his, bill["id"], amount_fen=7300)
    rest = await refund(client, his, bill["id"])
    await run_worker()

    assert (part.status_code, part.json()["state"]) == (201, "SUCCEEDED"), part.text
    assert part.json()["cash_fen"] == 7300 - 7300 * 17823 // 73000
    assert (rest.status_code, rest.json()["state"]) == (201, "SUCCEEDED")
    assert part.json()["cash_fen"] + rest.json()["cash_fen"] == 55177
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert (shown["state"], shown["refunded_fen"]) == ("REFUNDED", 73000)
    assert await ledger.balance(COUNTER_CASH) == 0
    assert await ledger.balance(RECEIVABLE) == 0
    assert {r["state"] for r in await Refund.select(Refund.state)} == {"SUCCEEDED"}
    assert await Notification.count().where(Notification.template == "refund_succeeded") == 2
    usage = await InsuredYearUsage.select().first()
    assert (usage["fund_paid_fen"], usage["deductible_met_fen"]) == (0, 0)


async def test_a_cash_part_never_paid_at_the_counter_closes_with_its_bill_and_everything_reverses(
    client, sandbox_http, settings, runtime, run_worker
):
    _, his, bill, _ = await at_the_counter(client, sandbox_http, settings)
    assert await cash.check(runtime, uuid.UUID(bill["id"])) == "awaiting the counter"
    past = datetime.now(UTC) - timedelta(hours=1)
    await Bill.update({Bill.paying_at: past, Bill.expires_at: past}).where(Bill.id == bill["id"])

    too_late = await cashier_records(client, his, bill["id"])  # before the sweeper came by
    assert (too_late.status_code, too_late.json()["error"]["code"]) == (409, "BILL_EXPIRED")
    await runtime.redis.flushdb()  # no deferred job left: the sweeper finds the bill
    assert await jobs.sweep_bills(runtime) == 1
    await run_worker()

    assert await state(bill["id"]) == "CLOSED"
    assert (await CashPayment.select(CashPayment.state).first())["state"] == "CLOSED"
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 1
    assert await ledger.balance(RECEIVABLE) == 0
    assert await ledger.balance(COUNTER_CASH) == 0
    usage = await InsuredYearUsage.select().first()
    assert (usage["fund_paid_fen"], usage["deductible_met_fen"]) == (0, 0)
    closed = await cashier_records(client, his, bill["id"])
    assert (closed.status_code, closed.json()["error"]["code"]) == (409, "BILL_NOT_PAYABLE")


async def test_a_registration_fee_paid_at_the_counter_confirms_the_appointment(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings, channel="alipay")
    appointment = await held(client, patient, await one_session(client, patient, capacity=3))
    started = await pay(
        client, patient, appointment["bill_id"], cash_method="counter", use_personal_account=False
    )
    assert started.json()["state"] == "PAYING", started.text
    cash_fen = started.json()["cash_fen"]
    assert (await show(client, patient, appointment["id"]))["state"] == "HELD"

    his = await his_headers(client)
    recorded = await cashier_records(client, his, appointment["bill_id"], amount_fen=cash_fen)
    await run_worker()

    assert recorded.status_code == 201, recorded.text
    confirmed = await show(client, patient, appointment["id"])
    assert (confirmed["state"], confirmed["queue_no"]) == ("CONFIRMED", 1)
    assert await Notification.count().where(Notification.template == "appointment_booked") == 1

    # Cancelled on the phone: the fee is handed back at the counter, at once.
    cancelled = await cancel(client, patient, appointment["id"])
    await run_worker()

    assert cancelled.json()["state"] == "CANCELLED", cancelled.text
    given_back = await Refund.select(Refund.state, Refund.cash_fen).first()
    assert (given_back["state"], given_back["cash_fen"]) == ("SUCCEEDED", cash_fen)
    assert await ledger.balance(COUNTER_CASH) == 0
    assert (await Appointment.select(Appointment.state).first())["state"] == "CANCELLED"
