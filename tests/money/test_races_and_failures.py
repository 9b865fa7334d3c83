"""Races and half-finished work: concurrent pay and refund, expiry meeting a payment, a refund the
channel accepted and then failed, a request repeated after it failed part-way."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from backend.billing import payment, refunds, service
from backend.billing.schemas import BillCreate, ItemIn, RefundCreate
from backend.billing.tables import Bill, InsuredYearUsage, Refund
from backend.ledger.tables import Journal
from backend.oauth.service import Partner
from backend.partners.channels import RefundStatus
from tests.money.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
    refund,
)

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
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    assert (await pay(client, patient, bill["id"], cash_method="wechat")).json()["state"] == "PAYING"

    # The expiry job read CREATED just before the payment took the bill.
    assert await payment.end_unpaid(uuid.UUID(bill["id"]), "CLOSED", "expired unpaid", was="CREATED") is False

    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 0


@pytest.mark.channel_differs  # the sandbox refunds for real; WeChat's ABNORMAL is told here
async def test_a_refund_that_fails_after_the_channel_accepted_it_is_reversed(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    his = await his_headers(client)
    bill = await new_bill(client, his, patient, WITH_CT)
    started = (await pay(client, patient, bill["id"], cash_method="wechat")).json()
    await post_notification(
        client, "wechat", await payer_pays(sandbox_http, "wechat", started["out_trade_no"])
    )
    await run_worker()
    usage = (await InsuredYearUsage.select().first())["fund_paid_fen"]
    accepted = await refund(client, his, bill["id"], amount_fen=7300)
    assert accepted.json()["state"] == "PROCESSING"
    row = await Refund.select().first()

    # WeChat Pay reports the refund ABNORMAL (the payer's card was closed): it failed.
    outcome = await refunds.apply_status(runtime, row["id"], RefundStatus(row["out_refund_no"], "FAILED"))

    assert outcome == "failed"
    assert (await Refund.select(Refund.state).first())["state"] == "FAILED"
    shown = await Bill.select(Bill.state, Bill.refunded_fen).first()
    assert (shown["state"], shown["refunded_fen"]) == ("PAID", 0)
    assert (await InsuredYearUsage.select().first())["fund_paid_fen"] == usage
    assert await Journal.count().where(Journal.kind == "bill.refund_failed") == 1


async def test_a_request_repeated_after_failing_part_way_finds_what_it_made(
    client, sandbox_http, settings, runtime
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="employee")
    request = BillCreate(
        order_type="DIAG",
        cert_no=patient.cert_no,
        items=[ItemIn(code="A1", name="诊查费", category="A", quantity=1, unit_price_fen=2500)],
    )

    first = await service.create(runtime, HIS, request, "key-1")
    again = await service.create(runtime, HIS, request, "key-1")

    assert first.id == again.id
    assert await Bill.count() == 1
    await pay(client, patient, str(first.id), use_personal_account=True)
    made = await refunds.request_refund(
        runtime, HIS, first.id, RefundCreate(reason="取消", amount_fen=500), "key-2"
    )
    repeated = await refunds.request_refund(
        runtime, HIS, first.id, RefundCreate(reason="取消", amount_fen=500), "key-2"
    )
    assert made.id == repeated.id
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
