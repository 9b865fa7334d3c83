"""A line's limit holds whoever pays at once."""

from __future__ import annotations

import asyncio

from backend.credit.tables import CreditLine, Drawdown
from tests.credit.arrange import bill_for, credit_patient, line_of, pay_by_credit, settle


async def test_twenty_payments_of_a_thousand_yuan_on_a_five_thousand_yuan_line_five_succeed(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bills = [await bill_for(client, patient, 100_000) for _ in range(20)]

    answers = await asyncio.gather(*(pay_by_credit(client, patient, bill) for bill in bills))

    codes = sorted("paying" if a.status_code == 200 else a.json()["error"]["code"] for a in answers)
    assert codes == ["CREDIT_LIMIT_EXCEEDED"] * 15 + ["paying"] * 5, codes
    line = await CreditLine.select(CreditLine.used_fen, CreditLine.limit_fen).first()
    assert (line["used_fen"], line["limit_fen"]) == (500_000, 500_000)
    assert await Drawdown.count() == 5

    await settle(bank_http, run_worker)
    shown = await line_of(client, patient)
    assert [d["status"] for d in shown["drawdowns"]] == ["DISBURSED"] * 5
    assert shown["available_fen"] == 0
    states = [
        (await client.get(f"/api/v1/bills/{b['id']}", headers=patient.headers)).json()["state"] for b in bills
    ]
    assert sorted(states) == ["CREATED"] * 15 + ["PAID"] * 5
