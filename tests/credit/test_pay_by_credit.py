"""Paying the cash part by credit: reserved on the line, disbursed by the bank, paid once; a
declined disbursement gives the reservation back and the bill is paid another way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.billing.parties import CHINA
from backend.billing.tables import Bill, CashPayment
from backend.credit.tables import CreditLine, Drawdown
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from tests.billing.factories import insured_patient, pay, payer_pays, post_notification
from tests.credit.arrange import bill_for, credit_patient, line_of, pay_by_credit, settle


async def test_a_bill_paid_by_credit_is_paid_once_the_bank_disburses(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 25600)

    started = await pay_by_credit(client, patient, bill)
    assert started.status_code == 200, started.text
    body = started.json()
    assert (body["state"], body["cash_method"], body["cash_fen"]) == ("PAYING", "credit", 25600)
    assert body["launch"]["type"] == "credit" and body["launch"]["status"] == "DISBURSING"
    reserved = await line_of(client, patient)
    assert (reserved["used_fen"], reserved["available_fen"]) == (25600, 500_000 - 25600)
    assert reserved["drawdowns"][0]["status"] == "RESERVED"

    await settle(bank_http, run_worker)

    assert (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()[
        "state"
    ] == "PAID"
    drawdown = (await line_of(client, patient))["drawdowns"][0]
    china_today = datetime.now(UTC).astimezone(CHINA).date()
    assert drawdown["status"] == "DISBURSED"
    assert drawdown["due_date"] == (china_today + timedelta(days=49)).isoformat()
    assert (drawdown["owed_fen"], drawdown["principal_fen"], drawdown["interest_accrued_fen"]) == (
        25600,
        25600,
        0,
    )
    bank = await ledger.balance(ledger.bank_credit("demo-bank"))
    debt = await ledger.balance(
        ledger.credit_debt(drawdown_line := (await CreditLine.select().first())["id"].__str__())
    )
    assert (bank, debt, drawdown_line is not None) == (-25600, -25600, True)
    assert await ledger.balance(ledger.bank_lent("demo-bank")) == 25600
    assert await Notification.count().where(Notification.template == "credit_paid") == 1
    # Paying again answers what was paid.
    again = await pay_by_credit(client, patient, bill)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "BILL_NOT_PAYABLE")


async def test_ten_copies_of_the_disbursement_pay_the_bill_once(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 12000)
    await bank_http.post(
        "/_bank/faults", json={"kind": "duplicate", "copies": 10, "event_type": "drawdown.disbursed"}
    )

    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    deliveries = await settle(bank_http, run_worker)

    disbursed = [d for d in deliveries if d["type"] == "drawdown.disbursed"]
    assert len(disbursed) == 1 and disbursed[0]["state"] == "delivered"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1
    assert await Notification.count().where(Notification.template == "credit_paid") == 1
    assert (await line_of(client, patient))["used_fen"] == 12000


async def test_a_declined_disbursement_frees_the_line_and_the_bill_is_paid_another_way(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 30000)
    await bank_http.put("/_bank/rules", json={"fail_disbursements": True})

    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    await settle(bank_http, run_worker)

    line = await line_of(client, patient)
    assert (line["used_fen"], line["drawdowns"][0]["status"]) == (0, "FAILED")
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert (shown["state"], shown["cash_method"]) == ("PAYING", None)
    assert await Notification.count().where(Notification.template == "credit_payment_failed") == 1

    by_wechat = await pay(client, patient, bill["id"], use_personal_account=False, cash_method="wechat")
    assert by_wechat.status_code == 200, by_wechat.text
    await post_notification(
        client, "wechat", await payer_pays(sandbox_http, "wechat", by_wechat.json()["out_trade_no"])
    )
    await run_worker()

    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    states = await CashPayment.select(CashPayment.method, CashPayment.state).order_by(CashPayment.id)
    assert [(c["method"], c["state"]) for c in states] == [("credit", "FAILED"), ("wechat", "PAID")]


async def test_a_lost_disbursement_callback_is_found_by_the_payment_check(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    from backend.billing import cash

    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 8800)
    await bank_http.post(
        "/_bank/faults", json={"kind": "sign_with", "keys": ["k3"], "event_type": "drawdown.disbursed"}
    )

    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    deliveries = await settle(bank_http, run_worker)
    refused = next(d for d in deliveries if d["type"] == "drawdown.disbursed")
    assert refused["state"] == "failed" and set(refused["statuses"]) == {401}
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "RESERVED"

    assert await cash.check(runtime, bill["id"]) == "paid"
    assert (await line_of(client, patient))["drawdowns"][0]["status"] == "DISBURSED"
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1


async def test_without_an_active_line_or_room_on_it_credit_is_refused_and_nothing_is_written(
    client, sandbox_http, settings, bank_http, run_worker
):
    stranger = await insured_patient(client, sandbox_http, settings)
    bill = await bill_for(client, stranger, 1000)
    refused = await pay_by_credit(client, stranger, bill)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "CREDIT_LINE_NOT_ACTIVE")

    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    big = await bill_for(client, patient, 500_001)
    too_much = await pay_by_credit(client, patient, big)
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (409, "CREDIT_LIMIT_EXCEEDED")
    assert too_much.json()["error"]["detail"]["available_fen"] == 500_000
    assert await Bill.count().where(Bill.state == "CREATED") == 2
    assert await Drawdown.count() == 0 and await CashPayment.count() == 0
    assert await Journal.count().where(Journal.kind == "bill.settled") == 0

    await CreditLine.update({CreditLine.status: "FROZEN"}, force=True)
    frozen = await pay_by_credit(client, patient, big)
    assert (frozen.status_code, frozen.json()["error"]["code"]) == (409, "CREDIT_LINE_FROZEN")
    await CreditLine.update({CreditLine.status: "ACTIVE"}, force=True)


async def test_after_a_declined_drawdown_credit_may_be_tried_again_and_pays(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 30000)
    await bank_http.put("/_bank/rules", json={"fail_disbursements": True})
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    await settle(bank_http, run_worker)
    await bank_http.put("/_bank/rules", json={"fail_disbursements": False})

    again = await pay_by_credit(client, patient, bill)
    assert again.status_code == 200, again.text
    await settle(bank_http, run_worker)

    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    drawdowns = (await line_of(client, patient))["drawdowns"]
    assert [d["status"] for d in drawdowns] == ["FAILED", "DISBURSED"]
    numbers = [
        c["out_trade_no"] for c in await CashPayment.select(CashPayment.out_trade_no).order_by(CashPayment.id)
    ]
    assert len(set(numbers)) == 2 and "-" in numbers[1]
