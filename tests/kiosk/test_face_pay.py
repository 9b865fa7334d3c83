"""Paying by face at a kiosk: the face taken for this kiosk, this bill and this amount, live and
sure enough, the patient's, within the caps, used once; the bill then paid as on the phone and
the face payment recorded for fund supervision."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from backend.audit import full_audit
from backend.billing.tables import Bill, CashPayment
from backend.kiosk.tables import FacePayment
from backend.notify.tables import Notification
from backend.oauth.service import create_client
from backend.platform.errors import AppError
from tests.billing.factories import ITEMS, his_headers, insured_patient, new_bill
from tests.family.test_acting_for import linked
from tests.family.test_mutual_aid import grant
from tests.helpers import bearer, face_assertion, terminal_token
from tests.kiosk.arrange import face_for, kiosk, paid_by_face, pay_by_face, shown, visit_at
from tests.kiosk.test_walk_in import today

# Class A only: a resident patient's part is the deductible and co-payment, which a relative's
# personal account may pay in full by mutual aid.
IN_SCOPE = [item for item in ITEMS if item["category"] == "A"]


async def an_employee_with_a_bill(client, sandbox_http, settings):
    """An employee-insured patient whose personal account covers their part of the bill."""
    patient = await insured_patient(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), patient)
    return patient, bill


async def test_a_patient_pays_by_face_and_it_is_recorded_for_supervision(
    client, sandbox_http, settings, run_worker
):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    at = await kiosk(client)

    screen = await shown(client, at, bill["id"], await visit_at(client, sandbox_http, at, patient))
    assertion = await face_for(sandbox_http, patient, at, bill["id"], screen["amount_fen"])
    paid = await pay_by_face(client, at, bill["id"], assertion, screen["amount_fen"])
    await run_worker()

    assert screen["amount_fen"] == screen["split"]["total_fen"] - screen["split"]["fund_fen"] > 0
    assert paid.status_code == 200, paid.text
    answer = paid.json()
    assert (answer["state"], answer["cash_fen"], answer["paid_by"]) == ("PAID", 0, "patient")
    assert answer["personal_account_fen"] == screen["amount_fen"] and answer["kiosk"] == at.client_id
    record = await FacePayment.select().first()
    assert (record["kiosk_client_id"], record["amount_fen"], record["liveness"]) == (
        at.client_id,
        screen["amount_fen"],
        True,
    )
    assert record["score"] >= settings.kiosk.min_face_score and record["cash_source"] == "none"
    told = await Notification.select(Notification.template, Notification.params).where(
        Notification.template == "face_payment"
    )
    assert len(told) == 1 and json.loads(told[0]["params"])["kiosk"] == "门诊大厅自助机"
    seen = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert seen["state"] == "PAID"


async def test_every_face_that_is_not_this_payments_is_refused_and_nothing_is_paid(
    client, sandbox_http, settings
):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    other, other_bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    at, elsewhere = await kiosk(client), await kiosk(client, name="另一台自助机")
    amount = (await shown(client, at, bill["id"], await visit_at(client, sandbox_http, at, patient)))[
        "amount_fen"
    ]

    async def attempt(assertion: str, amount_fen: int = amount, bill_id: str = bill["id"]) -> Any:
        return await pay_by_face(client, at, bill_id, assertion, amount_fen)

    refusals = {
        "another person's face": await attempt(await face_for(sandbox_http, other, at, bill["id"], amount)),
        "for another bill": await attempt(
            await face_for(sandbox_http, patient, at, other_bill["id"], amount)
        ),
        "for another amount": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount - 1)
        ),
        "the amount changed on the way": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount - 1), amount - 1
        ),
        "taken by another kiosk": await attempt(
            await face_for(sandbox_http, patient, elsewhere, bill["id"], amount)
        ),
        "not sure enough": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount, score=0.92)
        ),
        "below the platform's floor": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount, score=0.5)
        ),
        "not live": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount, liveness=False)
        ),
        "for another payer or cash": await attempt(
            await face_for(sandbox_http, patient, at, bill["id"], amount, by="patient/credit")
        ),
    }
    used = await face_for(sandbox_http, patient, at, bill["id"], amount)
    first = await attempt(used)
    replayed = await pay_by_face(client, at, other_bill["id"], used, amount)

    codes = {why: (a.status_code, a.json()["error"]["code"]) for why, a in refusals.items()}
    assert codes == {
        "another person's face": (422, "FACE_NOT_THE_PATIENT"),
        "for another bill": (422, "FACE_NOT_FOR_THIS_PAYMENT"),
        "for another amount": (422, "FACE_NOT_FOR_THIS_PAYMENT"),
        "the amount changed on the way": (409, "KIOSK_AMOUNT_CHANGED"),
        "taken by another kiosk": (422, "FACE_NOT_FROM_THIS_KIOSK"),
        "not sure enough": (422, "FACE_SCORE_TOO_LOW"),
        "below the platform's floor": (422, "ECERT_FACE_REJECTED"),
        "not live": (422, "ECERT_FACE_REJECTED"),
        "for another payer or cash": (422, "FACE_NOT_FOR_THIS_PAYMENT"),
    }
    assert first.status_code == 200, first.text
    assert replayed.status_code in (409, 422) and replayed.json()["error"]["code"] in (
        "ECERT_FACE_REPLAYED",
        "FACE_NOT_FOR_THIS_PAYMENT",
    )
    assert await FacePayment.count() == 1
    states = {b["id"]: b["state"] for b in await Bill.select(Bill.id, Bill.state)}
    assert sorted(states.values()) == ["CREATED", "PAID"]


async def test_a_kiosk_of_another_institution_or_a_terminal_cannot_pay(client, sandbox_http, settings):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    here, there = await kiosk(client), await kiosk(client, institution="H33010002")
    amount = (await shown(client, here, bill["id"], await visit_at(client, sandbox_http, here, patient)))[
        "amount_fen"
    ]
    elsewhere = await pay_by_face(
        client, there, bill["id"], await face_for(sandbox_http, patient, there, bill["id"], amount), amount
    )
    terminal = await client.post(
        f"/api/v1/partner/kiosk/bills/{bill['id']}/pay",
        json={"face_assertion": "x" * 20, "amount_fen": amount},
        headers={**bearer(await terminal_token(client)), "Idempotency-Key": "k" * 16},
    )

    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "BILL_NOT_FOUND"
    assert terminal.status_code == 403 and terminal.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert (await Bill.select(Bill.state).first())["state"] == "CREATED"


async def test_the_caps_send_the_patient_to_the_counter(client, sandbox_http, settings, runtime):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    at = await kiosk(client)
    small = [{**ITEMS[-1], "unit_price_fen": 30_000}]  # class C: all of it is the patient's
    bills = [await new_bill(client, his, patient, small) for _ in range(4)]
    dear = await new_bill(client, his, patient, [{**ITEMS[-1], "unit_price_fen": 60_000}])

    over_one = await paid_by_face(client, sandbox_http, at, patient, dear["id"])
    paid = [await paid_by_face(client, sandbox_http, at, patient, b["id"]) for b in bills]

    assert settings.kiosk.max_payment_fen == 50_000 and settings.kiosk.max_daily_fen == 100_000
    assert over_one.status_code == 422 and over_one.json()["error"]["code"] == "KIOSK_PAYMENT_CAP_EXCEEDED"
    assert [p.status_code for p in paid] == [200, 200, 200, 422]
    assert paid[3].json()["error"]["code"] == "KIOSK_DAILY_CAP_EXCEEDED"
    assert paid[3].json()["error"]["detail"]["left_fen"] == 10_000
    assert await FacePayment.count() == 3


async def test_a_daily_cap_holds_when_kiosks_pay_at_once(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    kiosks = [await kiosk(client, name=f"自助机{n}") for n in range(6)]
    bills = [await new_bill(client, his, patient, [{**ITEMS[-1], "unit_price_fen": 30_000}]) for _ in kiosks]
    faces = [
        await face_for(sandbox_http, patient, k, b["id"], 30_000) for k, b in zip(kiosks, bills, strict=True)
    ]

    answers = await asyncio.gather(
        *(pay_by_face(client, k, b["id"], f, 30_000) for k, b, f in zip(kiosks, bills, faces, strict=True))
    )

    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 200, 422, 422, 422], [a.text for a in answers]
    paid = await FacePayment.select(FacePayment.amount_fen)
    assert sum(p["amount_fen"] for p in paid) == 90_000 <= settings.kiosk.max_daily_fen


async def test_two_kiosks_paying_one_bill_at_once_make_one_payment(client, sandbox_http, settings):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    first, second = await kiosk(client), await kiosk(client, name="二楼自助机")
    amount = (await shown(client, first, bill["id"], await visit_at(client, sandbox_http, first, patient)))[
        "amount_fen"
    ]
    faces = [await face_for(sandbox_http, patient, k, bill["id"], amount) for k in (first, second)]

    answers = await asyncio.gather(
        pay_by_face(client, first, bill["id"], faces[0], amount),
        pay_by_face(client, second, bill["id"], faces[1], amount),
    )

    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["error"]["code"] == "BILL_NOT_PAYABLE"
    assert await FacePayment.count() == 1


async def test_a_relatives_account_pays_at_the_kiosk_only_if_they_allowed_it(
    client, sandbox_http, settings, run_worker
):
    child = await insured_patient(client, sandbox_http, settings)
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    link = await linked(client, child, parent, manage=True)
    await grant(client, link, child, pay=True)
    bill = await new_bill(client, await his_headers(client), parent, IN_SCOPE)
    at = await kiosk(client)

    refused = await client.post(
        f"/api/v1/partner/kiosk/bills/{bill['id']}/presettle",
        json={"payer": "relative", "visit_token": await visit_at(client, sandbox_http, at, parent)},
        headers=at.headers,
    )
    await grant(client, link, child, kiosk=True)
    paid = await paid_by_face(client, sandbox_http, at, parent, bill["id"], payer="relative")
    await run_worker()

    assert refused.status_code == 422 and refused.json()["error"]["code"] == "FAMILY_KIOSK_NOT_GRANTED"
    assert paid.status_code == 200, paid.text
    answer = paid.json()
    assert (answer["state"], answer["paid_by"], answer["cash_fen"]) == ("PAID", "relative", 0)
    assert answer["family_account_fen"] == answer["amount_fen"] > 0
    told = await Notification.select(Notification.user_id).where(Notification.template == "face_payment")
    assert len(told) == 2  # the parent (they have the app) and the child whose account paid
    record = await FacePayment.select(FacePayment.family_link_id).first()
    assert record["family_link_id"] == link["id"]
    assert await CashPayment.count() == 0


async def test_the_audit_finds_a_kiosk_payment_without_its_face(client, sandbox_http, settings):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    at = await kiosk(client)
    assert (await paid_by_face(client, sandbox_http, at, patient, bill["id"])).status_code == 200
    record = await FacePayment.select().first()

    await FacePayment.delete().where(FacePayment.id == record["id"])
    problems, _ = await full_audit()
    await FacePayment.insert(FacePayment(**record))

    assert any("face payments" in p and bill["bill_no"] in p for p in problems), problems
    assert (await full_audit())[0] == []


async def test_an_elder_walks_in_registers_and_pays_the_fee_by_face(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    session_id = await today(client, patient, capacity=5)
    at = await kiosk(client)
    opened = await client.post(
        "/api/v1/partner/ecert/face",
        json={"face_assertion": await face_assertion(sandbox_http, patient.id_number, kiosk=at.client_id)},
        headers=at.headers,
    )
    visit = opened.json()["visit_token"]
    hold = await client.post(
        "/api/v1/partner/kiosk/appointments",
        json={"visit_token": visit, "session_id": session_id},
        headers={**at.headers, "Idempotency-Key": "walk-in-and-pay-1"},
    )
    bills = (
        await client.get("/api/v1/partner/kiosk/bills", params={"visit_token": visit}, headers=at.headers)
    ).json()

    paid = await paid_by_face(client, sandbox_http, at, patient, hold.json()["bill_id"])
    await run_worker()

    assert hold.status_code == 201, hold.text
    assert [b["id"] for b in bills["items"]] == [hold.json()["bill_id"]]
    assert [b["order_type"] for b in bills["items"]] == ["REG"]
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "PAID"
    mine = (await client.get("/api/v1/appointments", headers=patient.headers)).json()["items"]
    assert [(a["id"], a["state"]) for a in mine] == [(hold.json()["id"], "CONFIRMED")]


async def test_the_cash_part_left_for_the_counter_is_paid_there(client, sandbox_http, settings, run_worker):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    his = await his_headers(client)
    bill = await new_bill(client, his, patient)
    at = await kiosk(client)

    paid = await paid_by_face(client, sandbox_http, at, patient, bill["id"], cash="counter")
    answer = paid.json()
    collected = await client.post(
        f"/api/v1/partner/bills/{bill['id']}/counter-payment",
        json={"amount_fen": answer["cash_fen"], "receipt_no": "R20261201-0001", "tender": "cash"},
        headers={**his, "Idempotency-Key": "counter-after-kiosk-1"},
    )
    await run_worker()

    assert paid.status_code == 200, paid.text
    assert (answer["state"], answer["cash_method"]) == ("PAYING", "counter")
    assert answer["cash_fen"] == answer["amount_fen"] > 0  # a resident: no personal account
    assert answer["launch"]["bill_no"] == bill["bill_no"]
    assert collected.status_code == 201, collected.text
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert (await FacePayment.select(FacePayment.cash_source).first())["cash_source"] == "counter"


async def test_a_retry_gets_the_payments_answer_and_no_one_elses_split_is_shown(
    client, sandbox_http, settings
):
    patient, bill = await an_employee_with_a_bill(client, sandbox_http, settings)
    other, _ = await an_employee_with_a_bill(client, sandbox_http, settings)
    at = await kiosk(client)
    screen = await shown(client, at, bill["id"], await visit_at(client, sandbox_http, at, patient))
    assertion = await face_for(sandbox_http, patient, at, bill["id"], screen["amount_fen"])

    first = await pay_by_face(client, at, bill["id"], assertion, screen["amount_fen"])
    again = await pay_by_face(client, at, bill["id"], assertion, screen["amount_fen"])  # another key
    peeked = await client.post(
        f"/api/v1/partner/kiosk/bills/{bill['id']}/presettle",
        json={"visit_token": await visit_at(client, sandbox_http, at, other)},
        headers=at.headers,
    )

    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    assert peeked.status_code == 404 and "personal_account_balance_fen" not in peeked.text
    assert await FacePayment.count() == 1


async def test_cash_left_for_the_counter_is_not_taken_by_the_face(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    dear = await new_bill(
        client, await his_headers(client), patient, [{**ITEMS[-1], "unit_price_fen": 80_000}]
    )
    at = await kiosk(client)

    paid = await paid_by_face(client, sandbox_http, at, patient, dear["id"], cash="counter")

    assert paid.status_code == 200, paid.text  # 800 yuan at the counter: the face took nothing
    record = await FacePayment.select(FacePayment.amount_fen, FacePayment.charged_fen).first()
    assert (record["amount_fen"], record["charged_fen"]) == (80_000, 0)


async def test_a_kiosk_may_not_bill_refund_or_record_the_counter():
    with pytest.raises(AppError) as refused:
        await create_client("kiosk", "a kiosk", ["kiosk:pay", "bills:write"], "H33010001")
    assert refused.value.detail == {"field": "scopes"}
