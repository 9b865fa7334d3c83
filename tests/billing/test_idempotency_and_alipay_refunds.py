"""Idempotency keys are kept long enough and then purged; Alipay refunds go back through the gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.billing.tables import Bill, Refund
from backend.ledger import service as ledger
from backend.platform import idempotency
from backend.platform.tables import IdempotencyKey
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    paid_in_cash,
    pay,
    refund,
)


async def test_keys_are_replayed_for_a_day_and_purged_after_two(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    first = await pay(client, patient, bill["id"], "day-old-key", use_personal_account=True)
    await IdempotencyKey.update(
        {IdempotencyKey.created_at: datetime.now(UTC) - timedelta(hours=25)}, force=True
    )
    await idempotency.purge()

    replayed = await pay(client, patient, bill["id"], "day-old-key", use_personal_account=True)

    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == first.json()
    await IdempotencyKey.update(
        {IdempotencyKey.created_at: datetime.now(UTC) - timedelta(hours=49)}, force=True
    )
    assert await idempotency.purge() == 2  # the bill's creation and the payment
    assert await IdempotencyKey.count() == 0


async def test_an_alipay_payment_is_refunded_through_the_gateway(client, sandbox_http, settings, run_worker):
    his, bill, started = await paid_in_cash(client, sandbox_http, settings, run_worker, "alipay")

    first = await refund(client, his, bill["id"], amount_fen=1000)
    rest = await refund(client, his, bill["id"])

    assert (first.status_code, first.json()["state"]) == (201, "SUCCEEDED")
    assert (rest.status_code, rest.json()["state"]) == (201, "SUCCEEDED")
    trade = (await sandbox_http.get(f"/_sandbox/pay/alipay/orders/{started['out_trade_no']}")).json()
    assert trade["refunded_fen"] == started["cash_fen"]
    assert (await Bill.select(Bill.state).first())["state"] == "REFUNDED"
    assert await Refund.count().where(Refund.state == "SUCCEEDED") == 2
    assert await ledger.balance(ledger.channel_clearing("alipay")) == 0
