"""Billing jobs: close bills at expiry, check payments and refunds with the channel, sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog

from backend.billing import callbacks, payment, refunds
from backend.billing.service import EXPIRE_JOB, expire_job_id
from backend.platform import idempotency
from backend.platform.logging import correlated
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

REFUND_SEND_JOB = "send_refund"
REFUND_CHECK_JOB = "check_refund"


async def expire_bill(ctx: dict[str, Any], bill_id: str) -> str:
    with correlated(None, job=EXPIRE_JOB, bill_id=bill_id):
        return await payment.expire(ctx["runtime"], uuid.UUID(bill_id))


async def check_payment(ctx: dict[str, Any], bill_id: str) -> str:
    with correlated(None, job=payment.CHECK_JOB, bill_id=bill_id):
        return await payment.check(ctx["runtime"], uuid.UUID(bill_id))


async def send_refund(ctx: dict[str, Any], refund_id: str) -> str:
    with correlated(None, job=REFUND_SEND_JOB, refund_id=refund_id):
        return await refunds.send(ctx["runtime"], uuid.UUID(refund_id))


async def check_refund(ctx: dict[str, Any], refund_id: str) -> str:
    with correlated(None, job=REFUND_CHECK_JOB, refund_id=refund_id):
        return await refunds.check(ctx["runtime"], uuid.UUID(refund_id))


async def apply_channel_event(runtime: Runtime, payload: dict[str, Any]) -> None:
    """Outbox handler: apply a stored channel notification."""
    await callbacks.apply(runtime, payload["inbox_id"])


async def sweep_bills(ctx: dict[str, Any]) -> int:
    """Cron: whatever a deferred job should have done and did not (Redis lost it, a worker died)."""
    runtime: Runtime = ctx["runtime"]
    check_after = timedelta(seconds=runtime.settings.billing.payment_check_after_seconds)
    with correlated(None, cron="sweep_bills"):
        expired, stale = await payment.overdue(check_after)
        requested, processing = await refunds.unfinished(check_after)
        jobs = [
            *((EXPIRE_JOB, expire_job_id(i), i) for i in expired),
            *((payment.CHECK_JOB, f"{payment.check_job_id(i)}:sweep", i) for i in stale),
            *((REFUND_SEND_JOB, f"refund-send:{i}", i) for i in requested),
            *((REFUND_CHECK_JOB, f"refund-check:{i}", i) for i in processing),
        ]
        for function, job_id, subject in jobs:
            await runtime.redis.enqueue_job(function, str(subject), _job_id=job_id)
        if jobs:
            log.info("bills swept", jobs=len(jobs))
        return len(jobs)


async def recheck_refunds_needing_attention(ctx: dict[str, Any]) -> int:
    """Cron, hourly: ask the channel about refunds waiting for a person (it may have paid them)."""
    runtime: Runtime = ctx["runtime"]
    with correlated(None, cron="recheck_refunds_needing_attention"):
        waiting = await refunds.needing_attention()
        for refund_id in waiting:
            await runtime.redis.enqueue_job(
                REFUND_CHECK_JOB, str(refund_id), _job_id=f"refund-check:{refund_id}"
            )
        return len(waiting)


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    with correlated(None, cron="purge_idempotency_keys"):
        return await idempotency.purge()
