"""How payments end without a notification: expiry, the order query, a crashed worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from arq.constants import default_queue_name, in_progress_key_prefix

from backend.billing import cash, jobs
from backend.billing.tables import Bill, CashPayment, InsuredYearUsage
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from tests import servers
from tests.billing.factories import (
    ITEMS,
    WITH_CT,
    his_headers,
    insured_patient,
    key,
    new_bill,
    pay,
    payer_pays,
)
from tests.helpers import inject_fault, sandbox_calls


async def a_paying_bill(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    started = await pay(client, patient, bill["id"], cash_method="wechat")
    assert started.json()["state"] == "PAYING"
    return patient, bill, started.json()


async def age(bill_id: str, *, expired: bool) -> None:
    """Time passes: the payment has been in progress a while (and the bill has expired)."""
    past = datetime.now(UTC) - timedelta(hours=1)
    changes = {Bill.paying_at: past, Bill.created_at: past}
    if expired:
        changes[Bill.expires_at] = past
    await Bill.update(changes).where(Bill.id == bill_id)


async def state(bill_id: str) -> str:
    return (await Bill.select(Bill.state).where(Bill.id == bill_id).first())["state"]


async def test_an_unpaid_bill_closes_at_its_expiry_by_the_deferred_job(
    client, sandbox_http, settings, runtime, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), patient)
    job = jobs.EXPIRE_BILL.key(bill["id"])
    assert await runtime.redis.zscore(default_queue_name, job) > time.time() * 1000 + 29 * 60_000

    await Bill.update({Bill.expires_at: datetime.now(UTC) - timedelta(seconds=1)}).where(
        Bill.id == bill["id"]
    )
    await runtime.redis.zadd(default_queue_name, {job: time.time() * 1000})  # its time has come
    await run_worker()

    assert await state(bill["id"]) == "CLOSED"
    late = await pay(client, patient, bill["id"], use_personal_account=True)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "BILL_NOT_PAYABLE")


async def test_the_expiry_job_logs_under_the_correlation_id_of_the_request_that_made_the_bill(
    client, sandbox_http, settings, runtime, run_worker, caplog
):
    patient = await insured_patient(client, sandbox_http, settings)
    answer = await client.post(
        "/api/v1/partner/bills",
        json={"order_type": "DIAG", "cert_no": patient.cert_no, "items": ITEMS},
        headers={**await his_headers(client), **key(), "X-Request-ID": "corr-bill-created-1"},
    )
    bill_id = answer.json()["id"]
    await Bill.update({Bill.expires_at: datetime.now(UTC) - timedelta(seconds=1)}).where(Bill.id == bill_id)
    await runtime.redis.zadd(default_queue_name, {jobs.EXPIRE_BILL.key(bill_id): time.time() * 1000})

    await run_worker()

    ended = [
        r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "unpaid bill ended"
    ]
    assert [line["correlation_id"] for line in ended] == ["corr-bill-created-1"]
    assert ended[0]["job"] == "expire_bill"


async def test_an_expired_payment_is_closed_at_the_channel_and_every_part_reversed(
    client, sandbox_http, settings, runtime, run_worker
):
    _, bill, started = await a_paying_bill(client, sandbox_http, settings)
    assert (await InsuredYearUsage.select().first())["fund_paid_fen"] == 17823
    await age(bill["id"], expired=True)
    await runtime.redis.flushdb()  # Redis lost the deferred jobs: the sweeper finds the bill

    assert await jobs.sweep_bills(runtime) == 1
    await run_worker()

    assert await state(bill["id"]) == "CLOSED"
    order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{started['out_trade_no']}")).json()
    assert order["state"] == "CLOSED"
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 1
    assert await ledger.balance(ledger.hospital_receivable("H33010001")) == 0
    usage = await InsuredYearUsage.select().first()
    assert (usage["fund_paid_fen"], usage["deductible_met_fen"]) == (0, 0)
    assert (await CashPayment.select(CashPayment.state).first())["state"] == "CLOSED"


async def test_a_payment_whose_notification_was_lost_is_completed_by_the_order_query(
    client, sandbox_http, settings, runtime, run_worker
):
    _, bill, started = await a_paying_bill(client, sandbox_http, settings)
    await payer_pays(sandbox_http, "wechat", started["out_trade_no"], deliver=False)
    await age(bill["id"], expired=False)

    await jobs.sweep_bills(runtime)
    await run_worker()

    assert await state(bill["id"]) == "PAID"
    assert len(await sandbox_calls(sandbox_http, "wechatpay", "query")) == 1
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1


async def test_a_payment_the_channel_failed_fails_the_bill_and_reverses_it(
    client, sandbox_http, settings, runtime
):
    _, bill, started = await a_paying_bill(client, sandbox_http, settings)
    await payer_pays(sandbox_http, "wechat", started["out_trade_no"], outcome="fail")

    assert await cash.check(runtime, bill["id"]) == "failed"

    assert await state(bill["id"]) == "FAILED"
    assert await Journal.count().where(Journal.kind == "bill.reversed") == 1
    assert await cash.check(runtime, bill["id"]) == "nothing to check"


async def test_a_worker_killed_while_asking_the_channel_leaves_one_payment(
    client, sandbox_http, settings, runtime, run_worker
):
    _, bill, started = await a_paying_bill(client, sandbox_http, settings)
    await payer_pays(sandbox_http, "wechat", started["out_trade_no"], deliver=False)
    await inject_fault(sandbox_http, partner="wechatpay", api="query", delay_ms=3000, times=1)
    await runtime.redis.enqueue_job(jobs.CHECK_PAYMENT.name, bill["id"], _job_id="check-now")
    worker = servers.arq_worker(settings)
    try:
        for _ in range(400):  # until the worker has started the job
            if await runtime.redis.exists(f"{in_progress_key_prefix}check-now"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)  # its query is on its way: the channel takes 3 s to answer
    finally:
        worker.kill()
        worker.wait(10)
    assert await state(bill["id"]) == "PAYING"

    await runtime.redis.delete(f"{in_progress_key_prefix}check-now")  # its marker lapses
    await run_worker()

    assert await state(bill["id"]) == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
