"""Repaying: at the bank's cashier or by its auto-debit; what is owed falls, the line gets its
room back, and no one repays more than is owed, even at once."""

from __future__ import annotations

import asyncio

from backend.credit.tables import Repayment
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from tests.credit.arrange import line_of, paid_by_credit, repay_at_cashier, settle


async def test_a_partial_then_a_full_repayment_restore_the_line(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient, _, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 30000)

    first = await repay_at_cashier(client, bank_http, patient, 10000, drawdown["id"])
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "AWAITING_PAYMENT" and first.json()["cashier_url"].startswith("http")
    await settle(bank_http, run_worker)
    line = await line_of(client, patient)
    assert (line["used_fen"], line["drawdowns"][0]["owed_fen"], line["drawdowns"][0]["repaid_fen"]) == (
        20000,
        20000,
        10000,
    )

    rest = await repay_at_cashier(client, bank_http, patient, 20000)  # the one due first
    assert rest.status_code == 201, rest.text
    await settle(bank_http, run_worker)
    line = await line_of(client, patient)
    assert (line["used_fen"], line["available_fen"], line["drawdowns"][0]["status"]) == (0, 500_000, "REPAID")
    assert await Notification.count().where(Notification.template == "repayment_received") == 2
    assert await Journal.count().where(Journal.kind == "credit.repaid") == 2


async def test_more_than_is_owed_is_refused_even_when_asked_at_once(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient, _, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 30000)

    over = await repay_at_cashier(client, bank_http, patient, 30001, drawdown["id"])
    assert (over.status_code, over.json()["error"]["code"]) == (422, "REPAYMENT_EXCEEDS_OWED")
    assert over.json()["error"]["detail"] == {"field": "amount_fen", "owed_fen": 30000}

    answers = await asyncio.gather(
        *(repay_at_cashier(client, bank_http, patient, 20000, drawdown["id"]) for _ in range(2))
    )
    assert sorted(a.status_code for a in answers) == [201, 422]
    await settle(bank_http, run_worker)
    shown = (await line_of(client, patient))["drawdowns"][0]
    assert (shown["repaid_fen"], shown["owed_fen"]) == (20000, 10000)


async def test_the_bank_auto_debits_on_the_due_date_with_the_interest_it_charged(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient, _, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 40000)
    due = drawdown["due_date"]
    year, month, day = (int(p) for p in due.split("-"))
    from datetime import date, timedelta

    ten_days_late = (date(year, month, day) + timedelta(days=10)).isoformat()
    await bank_http.put("/_bank/clock", json={"today": ten_days_late})

    debited = await bank_http.post(
        "/_bank/auto-debit", json={"drawdown_id": drawdown["id"], "amount_fen": None}
    )
    assert debited.status_code == 200, debited.text
    await settle(bank_http, run_worker)

    interest = 10 * (40000 * 5 // 10_000)  # ten days at 0.05% a day
    shown = (await line_of(client, patient))["drawdowns"][0]
    assert (shown["status"], shown["repaid_fen"], shown["principal_fen"]) == ("REPAID", 40000 + interest, 0)
    posted = await Repayment.select().first()
    assert (posted["source"], posted["interest_fen"], posted["principal_fen"]) == (
        "auto_debit",
        interest,
        40000,
    )
    assert await Journal.count().where(Journal.kind == "credit.interest") == 1
    books = (await bank_http.get("/_bank/books")).json()
    assert books["drawdowns"][0]["interest_charged_fen"] == interest


async def test_ten_copies_of_a_repayment_post_it_once(client, sandbox_http, settings, bank_http, run_worker):
    patient, _, _ = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 9000)
    await bank_http.post(
        "/_bank/faults", json={"kind": "duplicate", "copies": 10, "event_type": "repayment.posted"}
    )

    assert (await repay_at_cashier(client, bank_http, patient, 9000)).status_code == 201
    await settle(bank_http, run_worker)

    assert await Journal.count().where(Journal.kind == "credit.repaid") == 1
    shown = (await line_of(client, patient))["drawdowns"][0]
    assert (shown["repaid_fen"], shown["status"]) == (9000, "REPAID")
