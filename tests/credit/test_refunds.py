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


async def test_a_refund_posting_that_matches_no_refund_asked_for_is_flagged(
    client, sandbox_http, settings, bank_http, run_worker
):
    from datetime import UTC, datetime

    import msgspec

    from backend.credit import callbacks
    from backend.platform.tables import InboxEvent
    from tests.credit.test_callbacks import K2_PUBLIC, K2_SECRET

    patient, bill, drawdown = await paid_by_credit(
        client, sandbox_http, settings, bank_http, run_worker, 30000
    )
    await bank_http.post(
        "/_bank/faults", json={"kind": "delay", "delay_ms": 2000, "event_type": "refund.posted"}
    )
    assert (await refund(client, await his_headers(client), bill["id"], amount_fen=20000)).status_code == 201
    out_refund_no = (await Refund.select(Refund.out_refund_no).first())["out_refund_no"]
    from backend.credit import banks
    from backend.partners import webhooks

    await banks.add_key("demo-bank", "k2", K2_PUBLIC)
    forged = msgspec.json.encode(
        {
            "type": "refund.posted",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {
                "refund_id": out_refund_no,
                "drawdown_id": drawdown["id"],
                "amount_fen": 1,
                "reduced_owed_fen": 1,
                "returned_fen": 0,
                "posted_at": datetime.now(UTC).isoformat(),
            },
        }
    )
    headers = webhooks.sign_headers([webhooks.secret_key(K2_SECRET)], forged)
    assert (
        await client.post("/api/v1/callbacks/banks/demo-bank", content=forged, headers=headers)
    ).status_code == 204
    await run_worker()
    stored = await InboxEvent.select(InboxEvent.state, InboxEvent.outcome).where(
        InboxEvent.source == callbacks.source("demo-bank"), InboxEvent.kind == "refund.posted"
    )
    assert [s["state"] for s in stored] == ["flagged"]

    await settle(bank_http, run_worker)  # the bank's own posting, for 20000
    assert (await Refund.select(Refund.state).first())["state"] == "SUCCEEDED"
    assert (await line_of(client, patient))["drawdowns"][0]["owed_fen"] == 10000
