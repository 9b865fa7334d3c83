"""Banks' callbacks: verified (Standard Webhooks v1a against the bank's live keys, timestamp
within the tolerance), stored in the inbox once per (bank, webhook-id) and acknowledged, then
applied by a job through guarded SQL.

An event that depends on one not applied yet waits (inbox state `waiting`) and is retried with a
growing delay until it applies; after `MEDPAY_CREDIT_FLAG_WAITING_AFTER_SECONDS` it is flagged
for review instead. Unknown references and events of another bank's lines are flagged too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog

from backend.credit import applications, banks, drawdowns, jobs, refunds, repayments
from backend.credit.banks import BankRecord
from backend.credit.schemas import (
    BankEvent,
    DrawdownDisbursed,
    DrawdownFailed,
    LineApproved,
    LineDeclined,
    RefundPosted,
    RepaymentFailed,
    RepaymentPosted,
)
from backend.partners import webhooks
from backend.piccolo_conf import DB
from backend.platform import inbox, outbox
from backend.platform.errors import AppError, NotFound, Unauthorized
from backend.platform.runtime import Runtime
from backend.platform.tables import InboxEvent

log = structlog.get_logger(__name__)

Handler = Callable[[Runtime, BankRecord, Any], Awaitable[str]]
HANDLERS: dict[str, tuple[type[Any], Handler]] = {
    "line.approved": (LineApproved, applications.approved),
    "line.declined": (LineDeclined, applications.declined),
    "drawdown.disbursed": (DrawdownDisbursed, drawdowns.disbursed),
    "drawdown.failed": (DrawdownFailed, drawdowns.declined),
    "repayment.posted": (RepaymentPosted, repayments.posted),
    "repayment.failed": (RepaymentFailed, repayments.failed),
    "refund.posted": (RefundPosted, refunds.refund_posted),
}


def source(bank_code: str) -> str:
    return f"bank:{bank_code}"


async def receive(rt: Runtime, bank_code: str, headers: Mapping[str, str], body: bytes) -> None:
    """Verify and store a callback; raises (401, 404, 400) for what is not stored."""
    found = await banks.live_keys(bank_code, datetime.now(UTC))
    if found is None:
        raise NotFound("no such bank", code="BANK_NOT_FOUND")
    lender, keys = found
    try:
        verified = webhooks.verify(keys, headers, body, rt.settings.credit.callback_tolerance_seconds)
    except webhooks.WebhookInvalid as exc:
        log.warning("bank callback refused", bank=bank_code, reason=str(exc))
        raise Unauthorized(f"callback not verified: {exc}", code="CALLBACK_SIGNATURE_INVALID") from None
    try:
        event = msgspec.json.decode(body, type=BankEvent)
    except msgspec.DecodeError as exc:
        raise AppError(f"the callback's body does not read: {exc}", code="CALLBACK_MALFORMED") from None
    if b"\\u0000" in body:  # PostgreSQL's JSON cannot hold it
        raise AppError("the callback's body holds a NUL character", code="CALLBACK_MALFORMED")
    payload = {"type": event.type, "occurred_at": event.occurred_at.isoformat(), "data": event.data}
    async with DB.transaction():
        inbox_id = await inbox.store(source(lender.code), verified.msg_id, event.type[:32], payload)
        message = await outbox.add(jobs.APPLY_BANK_EVENT, {"inbox_id": inbox_id}) if inbox_id else None
    if message is not None:
        await outbox.send(rt.redis, [message])
    log.info(
        "bank callback stored", bank=bank_code, type=event.type, inbox_id=inbox_id, duplicate=inbox_id is None
    )


async def apply(rt: Runtime, inbox_id: int) -> str:
    """Job: apply one stored callback. Its effects are guarded, so running it again changes nothing."""
    row = await inbox.load(inbox_id)
    if row is None or row["state"] not in ("received", "waiting"):
        return "nothing to apply"
    lender = await banks.bank(row["source"].removeprefix("bank:"))
    payload = row["payload"] if isinstance(row["payload"], dict) else msgspec.json.decode(row["payload"])
    handler = HANDLERS.get(payload["type"])
    if handler is None:
        outcome = f"flagged: unknown event type {payload['type']}"
    else:
        kind, run = handler
        try:
            data = msgspec.convert(payload["data"], kind, strict=False)
        except msgspec.ValidationError as exc:
            outcome = f"flagged: the event's data does not read: {exc}"
        else:
            try:
                outcome = await run(rt, lender, data)
            except repayments.NotYet as exc:
                return await _wait(rt, inbox_id, row["received_at"], str(exc))
    state = (
        "flagged"
        if outcome.startswith("flagged")
        else "ignored"
        if outcome.startswith("ignored")
        else "applied"
    )
    await inbox.mark(inbox_id, state, outcome)
    (log.warning if state == "flagged" else log.info)(
        "bank callback applied", inbox_id=inbox_id, outcome=outcome
    )
    return outcome


async def _wait(rt: Runtime, inbox_id: int, received_at: datetime, why: str) -> str:
    """Not applicable yet: try again later, twice as long after each try, or flag it."""
    waited = datetime.now(UTC) - received_at
    if waited > timedelta(seconds=rt.settings.credit.flag_waiting_after_seconds):
        await inbox.mark(inbox_id, "flagged", f"flagged: waited {int(waited.total_seconds())} s: {why}")
        log.error("bank callback flagged: what it needs never came", inbox_id=inbox_id, why=why)
        return "flagged"
    await InboxEvent.update({InboxEvent.state: "waiting", InboxEvent.outcome: why}).where(
        InboxEvent.id == inbox_id
    )
    delay = min(max(waited.total_seconds(), 1.0), 60.0)
    due = datetime.now(UTC) + timedelta(seconds=delay)
    await jobs.RETRY_BANK_EVENT.enqueue(rt, str(inbox_id), defer_until=due, suffix=f":{due:%H%M%S%f}")
    log.info("bank callback waits", inbox_id=inbox_id, why=why, retry_in_s=round(delay, 1))
    return "waiting"


async def waiting(limit: int = 500) -> list[int]:
    """For the sweeper: callbacks waiting for what they depend on."""
    rows = (
        await InboxEvent.select(InboxEvent.id)
        .where((InboxEvent.state == "waiting") & InboxEvent.source.like("bank:%"))
        .order_by(InboxEvent.id)
        .limit(limit)
    )
    return [row["id"] for row in rows]
