"""Outbox jobs: one arq function runs every outbox message through the task it names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from arq import Retry

from backend.platform import outbox
from backend.platform.logging import correlated
from workers.gather import TASKS

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 8  # across retries and redeliveries; then the message is marked failed
JOB_TIMEOUT_SECONDS = 120
LEASE = timedelta(seconds=JOB_TIMEOUT_SECONDS + 30)


async def run_outbox_message(ctx: dict[str, Any], message_id: int) -> str:
    """Run one message's task under a lease; tasks are idempotent, as jobs may run twice."""
    message = await outbox.claim(message_id, LEASE)
    if message is None:
        return "done or held by another worker"
    with correlated(message.correlation_id, outbox_id=message_id, task=message.task):
        task = TASKS.get(message.task)
        if task is None:
            await outbox.mark_failed(message_id, f"no handler for task {message.task!r}")
            log.error("outbox task has no handler")
            return "no handler"
        try:
            await task.run(ctx["runtime"], message.payload)
        except Exception as exc:
            if message.attempts >= MAX_ATTEMPTS:
                await outbox.mark_failed(message_id, repr(exc))
                if task.give_up is not None:
                    await task.give_up(ctx["runtime"], message.payload, repr(exc))
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
