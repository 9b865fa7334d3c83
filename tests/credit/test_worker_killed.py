"""A worker killed while applying a bank's callback: the restarted work applies it once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from arq.constants import default_queue_name, in_progress_key_prefix

from backend.billing.tables import Bill
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.platform import outbox
from backend.platform.tables import InboxEvent, OutboxMessage
from tests import servers
from tests.credit.arrange import bill_for, credit_patient, line_of, pay_by_credit
from tests.faults.conftest import holding

pytestmark = pytest.mark.processes


async def test_a_worker_sigkilled_mid_callback_leaves_it_to_be_applied_once(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 15000)
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    await bank_http.post("/_bank/deliveries/wait", json={"timeout_s": 20})  # stored, not applied
    # Another session holds the bill, so the worker applying the disbursement waits on it.
    row_lock = "SELECT 1 FROM bill WHERE id = $1::uuid FOR UPDATE"
    async with holding(settings.database.url, row_lock, bill["id"]) as lock:
        worker = servers.arq_worker(settings)
        try:
            stuck = await lock.blocked('SELECT ALL "bill".')  # applying it, the bill its first lock
        finally:
            worker.kill()  # SIGKILL: no cleanup of any kind
            worker.wait(10)
        await lock.release()
        await lock.ended(stuck)
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    stored = await InboxEvent.select(InboxEvent.state).where(InboxEvent.kind == "drawdown.disbursed").first()
    assert stored["state"] == "received"

    # Its lease lapses, as it does with time; arq's in-progress marker of the dead worker's job does
    # not (it lives as long as the worker's longest job timeout, an hour): the outbox sweep sends
    # the message again all the same, and a worker applies it.
    await OutboxMessage.raw("UPDATE outbox_message SET locked_until = now() - interval '1 second'")
    assert [key async for key in runtime.redis.scan_iter(match=f"{in_progress_key_prefix}outbox:*")]
    assert await outbox.send_pending(runtime.redis, timedelta(0)) == 1
    # What else the dead worker was running (its start-up sweeps) stays held for the hour as well; a
    # burst worker would wait for those, a real one leaves them to the next scheduled run.
    held = [key async for key in runtime.redis.scan_iter(match=f"{in_progress_key_prefix}*")]
    others = [key for key in held if not key.decode().startswith(f"{in_progress_key_prefix}outbox:")]
    if others:
        await runtime.redis.delete(*others)
        await runtime.redis.zrem(
            default_queue_name, *(k.decode().removeprefix(in_progress_key_prefix) for k in others)
        )
    await run_worker()

    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1
    assert await Notification.count().where(Notification.template == "credit_paid") == 1
    assert (await line_of(client, patient))["drawdowns"][0]["status"] == "DISBURSED"
