"""Repayment reminders walked across a controlled clock: each milestone once however often the
run repeats; overdue freezes the line and full repayment unfreezes it."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from backend.credit import reminders
from backend.notify.tables import Notification
from tests import servers
from tests.credit.arrange import bill_for, line_of, paid_by_credit, pay_by_credit, settle


async def test_each_milestone_is_reminded_once_and_overdue_freezes_the_line(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    patient, _, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 25600)
    due = date.fromisoformat(drawdown["due_date"])

    for days in (-8, 7, 3, 1, 0, -1, -7, -30, -31):
        as_of = due - timedelta(days=days)
        await asyncio.gather(reminders.run(runtime, as_of), reminders.run(runtime, as_of))  # two workers
        await reminders.run(runtime, as_of)  # and the run repeated

    sent = await Notification.select(Notification.template, Notification.milestone).where(
        Notification.subject == f"drawdown:{drawdown['id']}"
    )
    assert sorted((n["milestone"], n["template"]) for n in sent if n["template"] != "credit_paid") == sorted(
        [
            ("due-7", "repayment_due"),
            ("due-3", "repayment_due"),
            ("due-1", "repayment_due"),
            ("due-0", "repayment_due"),
            ("overdue-1", "repayment_overdue"),
            ("overdue-7", "repayment_overdue"),
            ("overdue-30", "repayment_overdue"),
        ]
    )
    body = await Notification.select(Notification.body).where(Notification.milestone == "due-3").first()
    assert "256.00元" in body["body"] and drawdown["due_date"] in body["body"]

    assert (await line_of(client, patient))["status"] == "FROZEN"
    refused = await pay_by_credit(client, patient, await bill_for(client, patient, 1000))
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "CREDIT_LINE_FROZEN")

    await bank_http.put("/_bank/clock", json={"today": (due + timedelta(days=31)).isoformat()})
    await bank_http.post("/_bank/auto-debit", json={"drawdown_id": drawdown["id"], "amount_fen": None})
    await settle(bank_http, run_worker)
    line = await line_of(client, patient)
    assert (line["status"], line["available_fen"], line["drawdowns"][0]["status"]) == (
        "ACTIVE",
        500_000,
        "REPAID",
    )


async def test_operators_run_a_day_from_the_command_line(
    client, sandbox_http, settings, bank_http, run_worker
):
    _, _, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 7000)
    day = (date.fromisoformat(drawdown["due_date"]) - timedelta(days=3)).isoformat()
    env = {"DATABASE_URL": settings.database.url, "REDIS_URL": settings.redis.url, "MEDPAY_ENV": "test"}

    first = servers.medpay("credit", "remind", "--as-of", day, env=env)
    again = servers.medpay("credit", "remind", "--as-of", day, env=env)

    assert first.returncode == 0, first.stderr
    assert (
        f"{day}: 1 drawdowns due at a milestone, 1 reminders sent (due-3 1), 0 lines frozen" in first.stdout
    )
    assert "0 reminders sent" in again.stdout
    bad = servers.medpay("credit", "remind", "--as-of", "2027-02-30", env=env)
    assert bad.returncode == 2 and "--as-of" in bad.stderr
