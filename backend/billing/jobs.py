"""Billing's background work: bills closed at expiry, payments and refunds checked with their
channel, stored channel notifications applied, and the sweepers that catch up on all of it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog

from backend.billing import by_channel, callbacks, cash, counter, refunds
from backend.platform.runtime import Runtime
from backend.platform.work import Cron, Job, Task

log = structlog.get_logger(__name__)

# Every process that pays, checks or refunds loads this module (the web app through payment.py,
# workers through `workers.gather`): the payment channels' and the counter's cash methods register
# as these load (modules, not their methods: the counter's imports lead back here).
CASH_METHODS = (by_channel, counter)


async def _expire_bill(rt: Runtime, bill_id: str) -> str:
    return await cash.expire(rt, uuid.UUID(bill_id))


async def _check_payment(rt: Runtime, bill_id: str) -> str:
    return await cash.check(rt, uuid.UUID(bill_id))


async def _send_refund(rt: Runtime, refund_id: str) -> str:
    return await refunds.send(rt, uuid.UUID(refund_id))


async def _check_refund(rt: Runtime, refund_id: str) -> str:
    return await refunds.check(rt, uuid.UUID(refund_id))


async def _apply_channel_event(rt: Runtime, payload: dict[str, Any]) -> None:
    await callbacks.apply(rt, payload["inbox_id"])


EXPIRE_BILL = Job("expire_bill", _expire_bill, key="bill-expiry:{}".format)
CHECK_PAYMENT = Job("check_payment", _check_payment, key="payment-check:{}".format)
SEND_REFUND = Job("send_refund", _send_refund, key="refund-send:{}".format)
CHECK_REFUND = Job("check_refund", _check_refund, key="refund-check:{}".format)
APPLY_CHANNEL_EVENT = Task("billing.apply_channel_event", _apply_channel_event)


async def sweep_bills(rt: Runtime) -> int:
    """Whatever a deferred job should have done and did not (Redis lost it, a worker died)."""
    check_after = timedelta(seconds=rt.settings.billing.payment_check_after_seconds)
    expired, stale = await cash.overdue(check_after)
    requested, processing = await refunds.unfinished(check_after)
    # Under ids of their own: the deferred job may still be held by a worker that died running it,
    # which arq lets go only after the worker's longest job timeout (an hour). Running one twice
    # is harmless: each re-reads what it acts on and changes it by guarded updates.
    due = [
        *((EXPIRE_BILL, i, ":sweep") for i in expired),
        *((CHECK_PAYMENT, i, ":sweep") for i in stale),
        *((SEND_REFUND, i, ":sweep") for i in requested),
        *((CHECK_REFUND, i, ":sweep") for i in processing),
    ]
    for job, subject, suffix in due:
        await job.enqueue(rt, str(subject), suffix=suffix)
    if due:
        log.info("bills swept", jobs=len(due))
    return len(due)


async def recheck_refunds_needing_attention(rt: Runtime) -> int:
    """Hourly: ask the channel about refunds waiting for a person (it may have paid them)."""
    waiting = await refunds.needing_attention()
    for refund_id in waiting:
        await CHECK_REFUND.enqueue(rt, str(refund_id))
    return len(waiting)


JOBS = [
    EXPIRE_BILL,
    CHECK_PAYMENT,
    SEND_REFUND,
    CHECK_REFUND,
    APPLY_CHANNEL_EVENT,
    Cron(sweep_bills, at={"second": {5}}, run_at_startup=True),
    Cron(recheck_refunds_needing_attention, at={"minute": {7}, "second": {30}}, timeout=120),
]
