"""A worker killed while applying a bank's callback: the restarted work applies it once."""

from __future__ import annotations

import asyncio

import asyncpg
from arq.constants import in_progress_key_prefix

from backend.billing.tables import Bill
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.platform.tables import InboxEvent, OutboxMessage
from tests import servers
from tests.credit.arrange import bill_for, credit_patient, line_of, pay_by_credit


async def test_a_worker_sigkilled_mid_callback_leaves_it_to_be_applied_once(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 15000)
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    await bank_http.post("/_bank/deliveries/wait", json={"timeout_s": 20})  # stored, not applied
    # Another session holds the bill, so the worker applying the disbursement waits on it.
    blocker = await asyncpg.connect(settings.database.url)
    holding = blocker.transaction()
    await holding.start()
    await blocker.execute("SELECT 1 FROM bill WHERE id = $1::uuid FOR UPDATE", bill["id"])
    try:
        message = await OutboxMessage.select().where(OutboxMessage.task == "credit.apply_bank_event").first()
        worker = servers.arq_worker(settings)
        try:
            for _ in range(400):  # until the worker has claimed it and is inside applying it
                claimed = await OutboxMessage.select(OutboxMessage.attempts).where(
                    OutboxMessage.id == message["id"]
                )
                if claimed[0]["attempts"] >= 1:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        finally:
            worker.kill()  # SIGKILL: no cleanup of any kind
            worker.wait(10)
    finally:
        await holding.rollback()
        await blocker.close()
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    stored = await InboxEvent.select(InboxEvent.state).where(InboxEvent.kind == "drawdown.disbursed").first()
    assert stored["state"] == "received"

    # Its lease and arq's in-progress marker lapse, as they do with time.
    await OutboxMessage.raw("UPDATE outbox_message SET locked_until = now() - interval '1 second'")
    await runtime.redis.delete(f"{in_progress_key_prefix}outbox:{message['id']}")
    await run_worker()

    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1
    assert await Notification.count().where(Notification.template == "credit_paid") == 1
    assert (await line_of(client, patient))["drawdowns"][0]["status"] == "DISBURSED"
