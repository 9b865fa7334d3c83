"""Races and half-finished work: concurrent pay and refund, expiry meeting a payment, a refund the
channel accepted and then failed, a request repeated after it failed part-way."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from backend.billing import bills, cash, refunds
from backend.billing.schemas import BillCreate, ItemIn, RefundCreate
from backend.billing.tables import Bill, Refund
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.oauth.service import Partner
from backend.partners.channels import RefundStatus
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    paid_in_cash,
    pay,
    payer_pays,
    post_notification,
    refund,
)
from tests.helpers import inject_fault

HIS = Partner(
    client_id="his-under-test",
    kind="hospital",
    scopes=frozenset({"bills:write"}),
    institution_code="H33010001",
)


async def test_paying_and_refunding_one_persons_bills_at_once_never_deadlocks(
    client, sandbox_http, settings, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    his = await his_headers(client)
    for _ in range(6):
        paid = await new_bill(client, his, patient, WITH_CT)
        started = (
            await pay(client, patient, paid["id"], use_personal_account=True, cash_method="wechat")
        ).json()
        if started["state"] == "PAYING":
            note = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
            await post_notification(client, "wechat", note)
            await run_worker()
        fresh = await new_bill(client, his, patient, WITH_CT)

        # Both take the bill's person: usage, personal account, fund pool, hospital receivable.
        answers = await asyncio.gather(
            refund(client, his, paid["id"]),
            pay(client, patient, fresh["id"], use_personal_account=True, cash_method="wechat"),
        )

        assert [a.status_code for a in answers] == [201, 200], [a.text for a in answers]


async def test_expiry_leaves_a_bill_whose_payment_has_started_to_the_channel_check(
    client, sandbox_http, settings, runtime
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    assert (await pay(client, patient, bill["id"], cash_method="wechat")).json()["state"] == "PAYING"

    # The expiry job read CREATED just before the payment took the bill.
    ended = await cash.end_unpaid(runtime, uuid.UUID(bill["id"]), "CLOSED", "expired unpaid", was="CREATED")
    assert ended is False

    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 0


async def test_a_refund_accepted_but_not_paid_out_waits_for_the_channel_then_completes(
    client, sandbox_http, settings, runtime, run_worker
):
    his, bill, _ = await paid_in_cash(client, sandbox_http, settings, run_worker)
    accepted = await refund(client, his, bill["id"], amount_fen=7300)
    assert accepted.json()["state"] == "PROCESSING"
    row = await Refund.select().first()

    # WeChat Pay reports ABNORMAL: the money left the merchant but the payer's card was closed.
    outcome = await refunds.apply_status(runtime, row["id"], RefundStatus(row["out_refund_no"], "ABNORMAL"))

    assert outcome == "needs attention"
    assert (await Refund.select(Refund.state).first())["state"] == "ATTENTION"
    shown = await Bill.select(Bill.state, Bill.refunded_fen).first()
    assert (shown["state"], shown["refunded_fen"]) == ("PARTIALLY_REFUNDED", 7300)  # it stands
    more = await refund(client, his, bill["id"])
    assert more.json()["amount_fen"] == 73000 - 7300  # its parts stay taken

    # Settled through the channel's abnormal-refund process, the channel reports success.
    assert await refunds.check(runtime, row["id"]) == "succeeded"
    assert (await Refund.select(Refund.state).where(Refund.id == row["id"]).first())["state"] == "SUCCEEDED"
    assert await Notification.count().where(Notification.template == "refund_succeeded") >= 1


@pytest.mark.channel_differs  # the sandbox cannot answer ABNORMAL: it is told to our side directly
async def test_a_refund_abnormal_at_its_first_answer_is_posted_and_waits(
    client, sandbox_http, settings, runtime, run_worker
):
    his, bill, _ = await paid_in_cash(client, sandbox_http, settings, run_worker)
    await inject_fault(sandbox_http, partner="wechatpay", api="refund", times=10, http_status=503)
    assert (await refund(client, his, bill["id"], amount_fen=7300)).status_code == 202
    row = await Refund.select().first()

    outcome = await refunds.apply_status(runtime, row["id"], RefundStatus(row["out_refund_no"], "ABNORMAL"))

    assert outcome == "needs attention"
    assert (await Refund.select(Refund.state).first())["state"] == "ATTENTION"
    assert (await Bill.select(Bill.refunded_fen).first())["refunded_fen"] == 7300
    assert await Journal.count().where(Journal.kind == "bill.refunded") == 1


async def test_a_refund_the_channel_refuses_is_refused_again_on_retry(
    client, sandbox_http, settings, run_worker
):
    his, bill, _ = await paid_in_cash(client, sandbox_http, settings, run_worker)
    await inject_fault(sandbox_http, partner="wechatpay", api="refund", times=1, code="NOT_ENOUGH")
    headers = {**his, "Idempotency-Key": "refund-once"}
    url = f"/api/v1/partner/bills/{bill['id']}/refunds"

    first = await client.post(url, json={"reason": "退费", "amount_fen": 1000}, headers=headers)
    again = await client.post(url, json={"reason": "退费", "amount_fen": 1000}, headers=headers)

    assert first.status_code == 409, first.text
    assert first.json()["error"]["code"] == "REFUND_REJECTED"
    assert first.json()["error"]["detail"]["platform_code"] == "NOT_ENOUGH"
    assert again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await Refund.select(Refund.state).first())["state"] == "REJECTED"
    assert (await Bill.select(Bill.refunded_fen).first())["refunded_fen"] == 0


async def test_a_request_repeated_after_failing_part_way_finds_what_it_made(
    client, sandbox_http, settings, runtime
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    request = BillCreate(
        order_type="DIAG",
        cert_no=patient.cert_no,
        items=[ItemIn(code="A1", name="诊查费", category="A", quantity=1, unit_price_fen=2500)],
    )

    first, at_once = await asyncio.gather(
        bills.create(runtime, HIS, request, "key-1"), bills.create(runtime, HIS, request, "key-1")
    )
    again = await bills.create(runtime, HIS, request, "key-1")

    assert first.id == at_once.id == again.id
    assert await Bill.count() == 1
    await pay(client, patient, str(first.id), use_personal_account=True)
    ask = RefundCreate(reason="取消", amount_fen=500)
    made, at_once = await asyncio.gather(
        refunds.request_refund(runtime, HIS, first.id, ask, "key-2"),
        refunds.request_refund(runtime, HIS, first.id, ask, "key-2"),
    )
    repeated = await refunds.request_refund(runtime, HIS, first.id, ask, "key-2")
    assert made.id == at_once.id == repeated.id
    assert await Refund.count() == 1


async def test_an_absurd_notification_timestamp_is_refused_not_a_crash(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    started = (await pay(client, patient, bill["id"], cash_method="wechat")).json()
    note = await payer_pays(sandbox_http, "wechat", started["out_trade_no"])

    for timestamp in ("9" * 400, "9" * 5000, "-1", "1e9"):
        answer = await post_notification(
            client, "wechat", {**note, "headers": {**note["headers"], "Wechatpay-Timestamp": timestamp}}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "FAIL"
