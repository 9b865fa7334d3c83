"""The cash part paid through WeChat Pay or Alipay: launched, notified, completed exactly once."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from backend.billing import cash
from backend.billing.tables import Bill, CashPayment, InsuredYearUsage
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.platform.tables import InboxEvent
from tests.billing.factories import (
    WITH_CT,
    forged_notification,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
)

MERCHANT_PUBLIC_KEY = Path(__file__).parents[2] / "miniprogram_stub/keys/wechatpay-merchant-public.pem"


async def paying(client, sandbox_http, settings, channel="wechat"):
    """A resident (no personal account) with a bill whose cash part is being paid."""
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident", channel=channel)
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    started = await pay(client, patient, bill["id"], cash_method=channel)
    assert started.status_code == 200, started.text
    return patient, bill, started.json()


async def test_wechat_pay_mixed_payment_completes_once_under_ten_duplicate_notifications(
    client, sandbox_http, settings, run_worker
):
    patient, bill, started = await paying(client, sandbox_http, settings)

    assert started["state"] == "PAYING"
    assert (started["fund_fen"], started["personal_account_fen"], started["cash_fen"]) == (17823, 0, 55177)
    launch = started["launch"]
    assert launch["mixTradeNo"] and launch["package"].startswith("prepay_id=")
    key = serialization.load_pem_public_key(MERCHANT_PUBLIC_KEY.read_bytes())
    message = f"{launch['appId']}\n{launch['timeStamp']}\n{launch['nonceStr']}\n{launch['package']}\n"
    key.verify(base64.b64decode(launch["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    receivable = ledger.hospital_receivable("H33010001")
    assert await ledger.balance(receivable) == 17823  # the fund's part settled with the payment

    notification = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
    answers = [await post_notification(client, "wechat", notification) for _ in range(10)]
    await run_worker()

    assert {a.status_code for a in answers} == {204}
    assert await InboxEvent.count() == 1
    shown = (await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)).json()
    assert shown["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await ledger.balance(receivable) == 73000
    assert await ledger.balance(ledger.channel_clearing("wechat")) == -55177
    assert await Notification.count().where(Notification.template == "payment_succeeded") == 1
    usage = await InsuredYearUsage.select().first()
    assert usage["fund_paid_fen"] == 17823


async def test_alipay_trade_completes_from_its_form_notification(client, sandbox_http, settings, run_worker):
    _patient, _bill, started = await paying(client, sandbox_http, settings, channel="alipay")
    assert set(started["launch"]) == {"tradeNO"}

    notification = await payer_pays(sandbox_http, "alipay", started["out_trade_no"])
    answers = [await post_notification(client, "alipay", notification) for _ in range(3)]
    await run_worker()

    assert {(a.status_code, a.text) for a in answers} == {(200, "success")}
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await ledger.balance(ledger.channel_clearing("alipay")) == -55177


async def test_notifications_out_of_order_each_complete_their_own_bill(
    client, sandbox_http, settings, run_worker
):
    first = await paying(client, sandbox_http, settings)
    second = await paying(client, sandbox_http, settings)
    notes = [await payer_pays(sandbox_http, "wechat", s[2]["out_trade_no"]) for s in (first, second)]

    for note in (notes[1], notes[0], notes[1]):
        assert (await post_notification(client, "wechat", note)).status_code == 204
    await run_worker()

    assert await Bill.count().where(Bill.state == "PAID") == 2
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 2


@pytest.mark.parametrize("tamper", ["body", "signature", "timestamp", "serial"])
async def test_a_forged_notification_is_refused_and_stores_nothing(client, sandbox_http, settings, tamper):
    _, _, started = await paying(client, sandbox_http, settings)
    note = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
    headers = dict(note["headers"])
    body = note["body"]
    if tamper == "body":
        body = json.dumps({**json.loads(body), "id": "EV-forged"})
    elif tamper == "signature":
        headers["Wechatpay-Signature"] = base64.b64encode(b"\0" * 256).decode()
    elif tamper == "timestamp":
        headers["Wechatpay-Timestamp"] = str(int(headers["Wechatpay-Timestamp"]) - 3600)
    else:
        headers["Wechatpay-Serial"] = "PUB_KEY_ID_UNKNOWN"

    answer = await post_notification(client, "wechat", {"headers": headers, "body": body})

    assert answer.status_code >= 400
    assert answer.json()["code"] == "FAIL"
    assert await InboxEvent.count() == 0
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"


async def test_a_forged_alipay_notification_is_refused(client, sandbox_http, settings):
    _, _, started = await paying(client, sandbox_http, settings, channel="alipay")
    note = await payer_pays(sandbox_http, "alipay", started["out_trade_no"])

    answer = await post_notification(client, "alipay", {"form": {**note["form"], "total_amount": "0.01"}})

    assert answer.status_code == 400
    assert answer.text == "fail"
    assert await InboxEvent.count() == 0


@pytest.mark.parametrize(
    ("override", "why"), [({"amount_fen": 1}, "paid 1 fen"), ({"merchant_id": "1900000999"}, "merchant")]
)
async def test_a_signed_notification_that_disagrees_with_the_order_changes_nothing(
    client, sandbox_http, settings, run_worker, override, why
):
    _, _, started = await paying(client, sandbox_http, settings)
    note = await forged_notification(sandbox_http, "wechat", started["out_trade_no"], **override)

    answer = await post_notification(client, "wechat", note)
    await run_worker()

    assert answer.status_code == 204  # genuine, so acknowledged; but not applied
    event = await InboxEvent.select().first()
    assert event["state"] == "ignored"
    assert why in event["outcome"]
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"cash_method": "alipay"}, 422, "CASH_METHOD_UNAVAILABLE"),
        ({"cash_method": "credit"}, 409, "CREDIT_LINE_NOT_ACTIVE"),  # no line to draw on
        ({}, 422, "CASH_METHOD_REQUIRED"),
        ({"cash_method": "cash"}, 400, "VALIDATION_ERROR"),
        ({"use_personal_account": "yes"}, 400, "VALIDATION_ERROR"),
    ],
)
async def test_a_payment_that_cannot_start_writes_nothing(client, sandbox_http, settings, body, status, code):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)

    answer = await pay(client, patient, bill["id"], **body)

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["detail"]["field"] in ("cash_method", "use_personal_account")
    assert (await Bill.select(Bill.state).first())["state"] == "CREATED"
    assert await Journal.count() == 0
    assert await CashPayment.count() == 0
    assert await InsuredYearUsage.count().where(InsuredYearUsage.fund_paid_fen != 0) == 0


async def test_a_notification_and_the_order_query_racing_complete_the_bill_once(
    client, sandbox_http, settings, runtime, run_worker
):
    _, bill, started = await paying(client, sandbox_http, settings)
    note = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
    assert (await post_notification(client, "wechat", note)).status_code == 204

    checked, _ = await asyncio.gather(cash.check(runtime, uuid.UUID(bill["id"])), run_worker())

    event = await InboxEvent.select().first()
    assert {checked, event["outcome"]} == {"paid", "already paid"}
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await ledger.balance(ledger.channel_clearing("wechat")) == -55177
    assert await Notification.count().where(Notification.template == "payment_succeeded") == 1
