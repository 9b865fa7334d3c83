"""Credit's background work: banks' callbacks applied (and retried while they wait), unanswered
applications sent again, and the daily repayment reminders."""

from __future__ import annotations

from typing import Any

import structlog

from backend.credit import applications, callbacks, method, reminders, repayments
from backend.platform.runtime import Runtime
from backend.platform.work import Cron, Job, Task

log = structlog.get_logger(__name__)

# Loaded by every process that pays (the web app through the routes, workers through
# `workers.gather`): "credit" is a cash method wherever bills are paid or checked.
CREDIT = method.CREDIT


async def _apply_bank_event(rt: Runtime, payload: dict[str, Any]) -> None:
    await callbacks.apply(rt, payload["inbox_id"])


async def _retry_bank_event(rt: Runtime, inbox_id: str) -> str:
    return await callbacks.apply(rt, int(inbox_id))


APPLY_BANK_EVENT = Task("credit.apply_bank_event", _apply_bank_event)
RETRY_BANK_EVENT = Job("credit_retry_bank_event", _retry_bank_event, key="bank-event:{}".format)
RESEND_APPLICATION = Job("credit_resend_application", applications.resend, key="credit-application:{}".format)


async def sweep_credit(rt: Runtime) -> int:
    """Callbacks still waiting, and applications the bank never answered: try them again;
    repayments left at the cashier: give their holds back."""
    waiting = await callbacks.waiting()
    unanswered = await applications.unanswered(rt.settings.billing.payment_check_after_seconds)
    released = await repayments.release_abandoned(rt.settings.credit.repayment_hold_seconds)
    for inbox_id in waiting:
        await RETRY_BANK_EVENT.enqueue(rt, str(inbox_id), suffix=":sweep")
    for line_id in unanswered:
        await RESEND_APPLICATION.enqueue(rt, str(line_id), suffix=":sweep")
    if waiting or unanswered or released:
        log.info("credit swept", waiting=len(waiting), applications=len(unanswered), released=released)
    return len(waiting) + len(unanswered) + released


async def send_reminders(rt: Runtime) -> int:
    """Daily at 09:00 in China: repayment reminders and overdue lines frozen, for today."""
    return (await reminders.run(rt, reminders.today())).sent


JOBS = [
    APPLY_BANK_EVENT,
    RETRY_BANK_EVENT,
    RESEND_APPLICATION,
    Cron(sweep_credit, at={"second": {35}}),
    Cron(send_reminders, at={"hour": {1}, "minute": {0}, "second": {0}}, timeout=3600),
]
