"""Shared credit: a holder's credit line pays a relative's cash part under a link granting
`credit`, within its monthly cap, however many payments race for it."""

from __future__ import annotations

import asyncio

from backend.credit.tables import CreditLine, Drawdown
from tests.billing.factories import insured_patient
from tests.credit.arrange import bill_for, credit_patient, line_of, pay_by_credit, settle
from tests.family.test_acting_for import linked
from tests.family.test_mutual_aid import grant


async def sharing(client, sandbox_http, settings, bank_http, run_worker, cap_fen: int | None):
    """A child with an approved line looking after a parent who granted `manage`; `credit` capped."""
    child = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    link = await linked(client, child, parent, manage=True)
    if cap_fen is not None:
        await grant(client, link, child, credit_cap_fen=cap_fen)
    return child, parent, link


async def test_a_holders_line_pays_a_relatives_bill_within_the_cap(
    client, sandbox_http, settings, bank_http, run_worker
):
    child, parent, link = await sharing(client, sandbox_http, settings, bank_http, run_worker, 30_000)
    first = await bill_for(client, parent, 20_000)
    second = await bill_for(client, parent, 15_000)

    paid = await pay_by_credit(client, child, first)
    over = await pay_by_credit(client, child, second)
    await settle(bank_http, run_worker)

    assert paid.status_code == 200, paid.text
    assert over.status_code == 409 and over.json()["error"]["code"] == "FAMILY_CREDIT_CAP_EXCEEDED"
    assert over.json()["error"]["detail"] == {
        "field": "cash_method",
        "available_fen": 10_000,
        "cash_fen": 15_000,
    }
    line = await line_of(client, child)  # the child's own line, drawn for the parent's bill
    assert [(d["status"], d["amount_fen"]) for d in line["drawdowns"]] == [("DISBURSED", 20_000)]
    drawn = await Drawdown.select(Drawdown.family_link_id).first()
    assert drawn["family_link_id"] == link["id"]
    shown = (await client.get(f"/api/v1/bills/{first['id']}", headers=parent.headers)).json()
    assert shown["state"] == "PAID" and shown["cash_method"] == "credit"
    assert (await client.get(f"/api/v1/bills/{second['id']}", headers=parent.headers)).json()[
        "state"
    ] == "CREATED"


async def test_without_the_credit_grant_a_relatives_bill_is_not_drawn(
    client, sandbox_http, settings, bank_http, run_worker
):
    child, parent, link = await sharing(client, sandbox_http, settings, bank_http, run_worker, 50_000)
    await grant(client, link, child, credit_cap_fen=None)
    bill = await bill_for(client, parent, 10_000)

    answer = await pay_by_credit(client, child, bill)

    assert answer.status_code == 422 and answer.json()["error"]["code"] == "CASH_METHOD_UNAVAILABLE"
    assert await Drawdown.count() == 0
    assert (await CreditLine.select(CreditLine.used_fen).first())["used_fen"] == 0


async def test_payments_racing_for_one_monthly_cap_never_pass_it(
    client, sandbox_http, settings, bank_http, run_worker
):
    child, parent, _ = await sharing(client, sandbox_http, settings, bank_http, run_worker, 100_000)
    bills = [await bill_for(client, parent, 30_000) for _ in range(8)]

    answers = await asyncio.gather(*(pay_by_credit(client, child, bill) for bill in bills))
    await settle(bank_http, run_worker)

    codes = sorted("paying" if a.status_code == 200 else a.json()["error"]["code"] for a in answers)
    assert codes == ["FAMILY_CREDIT_CAP_EXCEEDED"] * 5 + ["paying"] * 3, codes
    drawn = await Drawdown.select(Drawdown.amount_fen)
    assert sum(d["amount_fen"] for d in drawn) == 90_000 <= 100_000
    assert (await CreditLine.select(CreditLine.used_fen).first())["used_fen"] == 90_000
