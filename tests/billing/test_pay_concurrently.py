"""Paying under concurrency: one payment per bill, and a personal account never below zero."""

from __future__ import annotations

import asyncio
from collections import Counter

from backend.billing.tables import Bill, CashPayment
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from tests.billing.factories import WITH_CT, cash_item, his_headers, insured_patient, new_bill, pay


async def test_fifty_payments_from_a_balance_that_covers_twenty(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    probe = await new_bill(client, his, patient, cash_item(100))
    balance = (
        await client.post(f"/api/v1/bills/{probe['id']}/presettle", json={}, headers=patient.headers)
    ).json()["personal_account_balance_fen"]
    price = balance // 20  # twenty fit, a twenty-first does not
    bills = [await new_bill(client, his, patient, cash_item(price)) for _ in range(50)]

    answers = await asyncio.gather(*(pay(client, patient, b["id"], use_personal_account=True) for b in bills))

    outcomes = Counter((a.status_code, a.json().get("state") or a.json()["error"]["code"]) for a in answers)
    assert outcomes == {(200, "PAID"): 20, (422, "CASH_METHOD_REQUIRED"): 30}
    account = ledger.personal_account(await _insured_id(bills[0]["id"]))
    assert await ledger.balance(account) == balance - 20 * price >= 0
    assert await Bill.count().where(Bill.state == "PAID") == 20
    assert await Bill.count().where(Bill.state == "CREATED") == 31  # the probe and the thirty refused
    assert await Journal.count().where(Journal.kind == "bill.settled") == 20


async def test_two_devices_paying_one_bill_at_the_same_moment_make_one_payment(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)

    answers = await asyncio.gather(
        pay(client, patient, bill["id"], cash_method="wechat"),
        pay(client, patient, bill["id"], cash_method="wechat"),
    )

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = (a.json() for a in answers)
    assert first["out_trade_no"] == second["out_trade_no"]
    assert first["launch"]["package"] == second["launch"]["package"]
    assert await CashPayment.count() == 1
    assert await Journal.count().where(Journal.kind == "bill.settled") == 1
    other = await pay(client, patient, bill["id"], cash_method="wechat", use_personal_account=False)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "BILL_PAYMENT_IN_PROGRESS"


async def test_a_payment_repeated_under_new_keys_gets_the_same_order_even_ten_at_once(
    client, sandbox_http, settings
):
    """A second phone, or an app retrying a lost answer with a fresh key: the payment in progress."""
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    first = await pay(client, patient, bill["id"], use_personal_account=True, cash_method="wechat")
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "PAYING"

    body = {"use_personal_account": True, "cash_method": "wechat"}
    again = await pay(client, patient, bill["id"], **body)
    crowd = await asyncio.gather(*(pay(client, patient, bill["id"], **body) for _ in range(10)))

    for answer in [again, *crowd]:
        assert answer.status_code == 200, answer.text
        assert answer.json() == first.json()
    assert await CashPayment.count() == 1
    assert await Journal.count().where(Journal.kind == "bill.settled") == 1


async def test_first_payments_racing_from_several_phones_all_answer_one_launch(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)

    answers = await asyncio.gather(
        *(pay(client, patient, bill["id"], cash_method="wechat") for _ in range(6))
    )

    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)  # one launch, paySign and all
    again = await pay(client, patient, bill["id"], cash_method="wechat")
    assert again.json() == answers[0].json()
    assert await CashPayment.count() == 1


async def test_one_key_sent_five_times_at_once_pays_once(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    bill = await new_bill(client, await his_headers(client), patient)

    answers = await asyncio.gather(
        *(pay(client, patient, bill["id"], "same-key", use_personal_account=True) for _ in range(5))
    )

    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 4
    assert await Journal.count().where(Journal.kind == "bill.settled") == 1
    changed = await pay(client, patient, bill["id"], "same-key", use_personal_account=False)
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def _insured_id(bill_id: str) -> int:
    row = await Bill.select(Bill.insured_id).where(Bill.id == bill_id).first()
    return int(row["insured_id"])
