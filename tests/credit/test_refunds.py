"""Refunds of credit-paid bills go back through the bank: what is still owed falls first, and
what was repaid already the bank returns to the patient."""

from __future__ import annotations

from backend.billing.tables import Bill, Refund
from backend.credit.tables import CreditRefund
from backend.ledger import service as ledger
from tests.billing.factories import his_headers, refund
from tests.credit.arrange import line_of, paid_by_credit, repay_at_cashier, settle


async def test_a_refund_before_repayment_lowers_what_is_owed(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient, bill, _ = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 30000)

    answer = await refund(client, await his_headers(client), bill["id"], amount_fen=12000)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "PROCESSING"
    await settle(bank_http, run_worker)

    assert (await Refund.select(Refund.state).first())["state"] == "SUCCEEDED"
    posted = await CreditRefund.select().first()
    assert (posted["reduced_owed_fen"], posted["returned_fen"]) == (12000, 0)
    line = await line_of(client, patient)
    assert (line["used_fen"], line["drawdowns"][0]["owed_fen"], line["drawdowns"][0]["refunded_fen"]) == (
        18000,
        18000,
        12000,
    )
    assert (await Bill.select(Bill.state).first())["state"] == "PARTIALLY_REFUNDED"
    assert await ledger.balance(ledger.bank_credit("demo-bank")) == -18000


async def test_after_a_repayment_the_bank_returns_what_was_repaid(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient, bill, _ = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 30000)
    assert (await repay_at_cashier(client, bank_http, patient, 25000)).status_code == 201
    await settle(bank_http, run_worker)

    answer = await refund(client, await his_headers(client), bill["id"])  # all of it
    assert answer.status_code == 201, answer.text
    await settle(bank_http, run_worker)

    posted = await CreditRefund.select().first()
    assert (posted["amount_fen"], posted["reduced_owed_fen"], posted["returned_fen"]) == (30000, 5000, 25000)
    line = await line_of(client, patient)
    assert (line["used_fen"], line["drawdowns"][0]["status"], line["drawdowns"][0]["owed_fen"]) == (
        0,
        "REPAID",
        0,
    )
    assert (await Bill.select(Bill.state).first())["state"] == "REFUNDED"
    assert await ledger.balance(ledger.bank_credit("demo-bank")) == 0
