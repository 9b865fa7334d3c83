"""Refunds, whole or partial: every part of the bill gives back its share, cash through the channel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from backend.billing.jobs import sweep_bills
from backend.billing.tables import Bill, InsuredYearUsage, Refund
from backend.ledger import service as ledger
from backend.notify.tables import Notification
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
    refund,
)
from tests.helpers import inject_fault


async def paid_mixed_bill(client, sandbox_http, settings, run_worker):
    """An employee's bill paid by the fund, the personal account and WeChat Pay."""
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    # A first bill uses up the deductible, so the second has a fund part too.
    first = await new_bill(client, his, patient, WITH_CT)
    assert (await pay(client, patient, first["id"], use_personal_account=True)).json()["state"] == "PAID"
    bill = await new_bill(client, his, patient, WITH_CT)
    started = (
        await pay(client, patient, bill["id"], use_personal_account=False, cash_method="wechat")
    ).json()
    note = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
    assert (await post_notification(client, "wechat", note)).status_code == 204
    await run_worker()
    return patient, his, bill, started


async def test_partial_then_full_refund_reverses_every_part_and_the_years_usage(
    client, sandbox_http, settings, run_worker
):
    patient, his, bill, paid = await paid_mixed_bill(client, sandbox_http, settings, run_worker)
    assert (paid["fund_fen"], paid["personal_account_fen"], paid["cash_fen"]) == (52664, 0, 20336)
    usage_before = await InsuredYearUsage.select().first()

    part = await refund(client, his, bill["id"], amount_fen=7300)

    assert part.status_code == 201, part.text
    # 7300 of 73000: the fund gives back 52664 * 7300 // 73000 = 5266, cash 2033; the odd fen is cash.
    assert (part.json()["fund_fen"], part.json()["personal_account_fen"], part.json()["cash_fen"]) == (
        5266,
        0,
        2034,
    )
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert (shown["state"], shown["refunded_fen"]) == ("PARTIALLY_REFUNDED", 7300)

    rest = await refund(client, his, bill["id"])
    await run_worker()

    assert rest.json()["amount_fen"] == 73000 - 7300
    assert rest.json()["fund_fen"] + 5266 == 52664
    assert (await Bill.select(Bill.state).where(Bill.id == bill["id"]).first())["state"] == "REFUNDED"
    order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{paid['out_trade_no']}")).json()
    assert order["refunded_fen"] == 20336
    assert len(order["refunds"]) == 2
    usage = await InsuredYearUsage.select().first()
    assert usage["fund_paid_fen"] == usage_before["fund_paid_fen"] - 52664
    assert await ledger.balance(ledger.channel_clearing("wechat")) == 0
    refunds = await Refund.select(Refund.state)
    assert {r["state"] for r in refunds} <= {"PROCESSING", "SUCCEEDED"}

    too_much = await refund(client, his, bill["id"], amount_fen=1)
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "BILL_NOT_REFUNDABLE"


async def test_the_channels_refund_notification_confirms_the_refund(
    client, sandbox_http, settings, run_worker
):
    _patient, his, bill, _paid = await paid_mixed_bill(client, sandbox_http, settings, run_worker)
    answer = await refund(client, his, bill["id"], amount_fen=1000)
    created = await Refund.select().first()
    assert answer.json()["state"] in ("PROCESSING", "SUCCEEDED")

    note = await sandbox_http.get(f"/_sandbox/pay/wechat/refunds/{created['out_refund_no']}/notification")
    assert (await post_notification(client, "wechat", note.json())).status_code == 204
    await run_worker()

    assert (await Refund.select(Refund.state).first())["state"] == "SUCCEEDED"
    assert await Notification.count().where(Notification.template == "refund_succeeded") == 1


async def test_a_refund_without_cash_is_immediate(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    bill = await new_bill(client, his, patient, WITH_CT)
    await pay(client, patient, bill["id"], use_personal_account=True)
    account = ledger.personal_account((await Bill.select(Bill.insured_id).first())["insured_id"])
    balance = await ledger.balance(account)

    answer = await refund(client, his, bill["id"])

    assert answer.status_code == 201
    assert answer.json()["state"] == "SUCCEEDED"
    assert await ledger.balance(account) == balance + answer.json()["personal_account_fen"]
    assert answer.json()["personal_account_fen"] == 73000 - 12664
    usage = await InsuredYearUsage.select().first()
    assert (usage["deductible_met_fen"], usage["fund_paid_fen"]) == (0, 0)


async def test_concurrent_refunds_never_give_back_more_than_was_paid(
    client, sandbox_http, settings, run_worker
):
    _, his, bill, _ = await paid_mixed_bill(client, sandbox_http, settings, run_worker)

    answers = await asyncio.gather(*(refund(client, his, bill["id"], amount_fen=20000) for _ in range(6)))

    assert sorted(a.status_code for a in answers) == [201, 201, 201, 422, 422, 422]
    refused = next(a for a in answers if a.status_code == 422).json()["error"]
    assert (refused["code"], refused["detail"]["field"]) == ("REFUND_EXCEEDS_REMAINING", "amount_fen")
    assert (await Bill.select(Bill.refunded_fen).where(Bill.id == bill["id"]).first())[
        "refunded_fen"
    ] == 60000


async def test_a_refund_the_channel_could_not_take_is_sent_again_by_the_sweeper(
    client, sandbox_http, settings, run_worker, runtime
):
    _, his, bill, _ = await paid_mixed_bill(client, sandbox_http, settings, run_worker)
    await inject_fault(sandbox_http, partner="wechatpay", api="refund", times=10, http_status=503)

    answer = await refund(client, his, bill["id"], amount_fen=500)

    assert answer.status_code == 202
    assert answer.json()["state"] == "REQUESTED"
    assert (await Bill.select(Bill.refunded_fen).where(Bill.id == bill["id"]).first())["refunded_fen"] == 0
    await sandbox_http.delete("/_sandbox/faults")
    await Refund.update({Refund.created_at: datetime.now(UTC) - timedelta(hours=1)}).where(
        Refund.state == "REQUESTED"
    )
    await sweep_bills(runtime)
    await run_worker()

    assert (await Refund.select(Refund.state).first())["state"] in ("PROCESSING", "SUCCEEDED")
    assert (await Bill.select(Bill.refunded_fen).where(Bill.id == bill["id"]).first())["refunded_fen"] == 500
