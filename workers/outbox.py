"""Outbox jobs: one arq function runs every outbox message through the handler of its task."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from arq import Retry

from backend.auth import service as auth
from backend.billing.callbacks import APPLY_EVENT
from backend.notify import service as notify
from backend.platform import outbox
from backend.platform.logging import correlated
from backend.platform.runtime import Runtime
from workers.billing import apply_channel_event

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8  # across retries and redeliveries; then the message is marked failed
JOB_TIMEOUT_SECONDS = 120
LEASE = timedelta(seconds=JOB_TIMEOUT_SECONDS + 30)
Handler = Callable[[Runtime, dict[str, Any]], Awaitable[None]]


async def _session_revoked(_: Runtime, payload: dict[str, Any]) -> None:
    await auth.record_session_revoked(**payload)


async def _deliver_notification(runtime: Runtime, payload: dict[str, Any]) -> None:
    await notify.deliver(runtime, payload["notification_id"])


HANDLERS: dict[str, Handler] = {
    auth.SESSION_REVOKED: _session_revoked,
    notify.DELIVER: _deliver_notification,
    APPLY_EVENT: apply_channel_event,
}


async def _notification_given_up(_: Runtime, payload: dict[str, Any], error: str) -> None:
    await notify.give_up(payload["notification_id"], error)


# What to do when a task's job fails for good, so its subject does not wait forever.
GIVE_UP: dict[str, Callable[[Runtime, dict[str, Any], str], Awaitable[None]]] = {
    notify.DELIVER: _notification_given_up,
}


async def run_outbox_message(ctx: dict[str, Any], message_id: int) -> str:
    """Run one message's handler under a lease; handlers are idempotent, as jobs may run twice."""
    message = await outbox.claim(message_id, LEASE)
    if message is None:
        return "done or held by another worker"
    with correlated(message.correlation_id, outbox_id=message_id, task=message.task):
        handler = HANDLERS.get(message.task)
        if handler is None:
            await outbox.mark_failed(message_id, f"no handler for task {message.task!r}")
            log.error("outbox task has no handler")
            return "no handler"
        try:
            await handler(ctx["runtime"], message.payload)
        except Exception as exc:
            if message.attempts >= MAX_ATTEMPTS:
                await outbox.mark_failed(message_id, repr(exc))
                if (give_up := GIVE_UP.get(message.task)) is not None:
                    await give_up(ctx["runtime"], message.payload, repr(exc))
                log.exception("outbox task failed for good", attempts=message.attempts)
                return "failed"
            await outbox.release(message_id, repr(exc))
            log.warning("outbox task failed; retrying", error=repr(exc), attempts=message.attempts)
            raise Retry(defer=min(2**message.attempts, 300)) from exc
        except BaseException:
            # Cancelled (job timeout, worker shutdown): free the lease for the next attempt.
            await outbox.release(message_id, "interrupted")
            raise
        await outbox.mark_done(message_id)
        log.info("outbox task done")
        return "done"


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Cron: send what was never sent, or what Redis lost."""
    runtime: Runtime = ctx["runtime"]
    with correlated(None, cron="sweep_outbox"):
        return await outbox.send_pending(
            runtime.redis, timedelta(seconds=runtime.settings.worker.outbox_redeliver_seconds)
        )
