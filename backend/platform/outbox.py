"""The transactional outbox: jobs written with the change that causes them, sent after commit.

A service calls `add` inside its transaction, then `send` after commit. A message is written as
sent (`enqueued_at`), since `send` almost always succeeds, which spares a write per change; a send
that fails marks it unsent again, for the sweeper (`send_pending`, run by a worker cron) to send
at its next run. One that Redis lost, or whose process died between commit and send, is sent
again once `outbox_redeliver_seconds` have passed; jobs are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from arq import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix

from backend.piccolo_conf import DB
from backend.platform.logging import current_correlation_id
from backend.platform.tables import OutboxMessage
from backend.platform.work import Task

log = structlog.get_logger(__name__)

JOB = "run_outbox_message"


def job_id(message_id: int) -> str:
    return f"outbox:{message_id}"


async def add(task: Task, payload: dict[str, Any]) -> int:
    """Record a job; call inside the business transaction."""
    rows = await OutboxMessage.insert(
        OutboxMessage(
            task=task.name,
            payload=payload,
            correlation_id=current_correlation_id(),
            created_at=(now := datetime.now(UTC)),
            enqueued_at=now,
        )
    ).returning(OutboxMessage.id)
    return int(rows[0]["id"])


async def add_many(task: Task, payloads: list[dict[str, Any]]) -> list[int]:
    """`add` for many messages of one task, in one statement."""
    if not payloads:
        return []
    now, correlation_id = datetime.now(UTC), current_correlation_id()
    rows = await OutboxMessage.insert(
        *(
            OutboxMessage(
                task=task.name,
                payload=payload,
                correlation_id=correlation_id,
                created_at=now,
                enqueued_at=now,
            )
            for payload in payloads
        )
    ).returning(OutboxMessage.id)
    return [int(row["id"]) for row in rows]


async def add_for_each(task: Task, key: str, statement: str, *args: Any) -> list[int]:
    """`add` for each row a data-modifying `statement` returns (`RETURNING id`), in the same round
    trip: each message's payload is `{key: id}`. Call inside the business transaction."""
    now = datetime.now(UTC)
    rows = await OutboxMessage.raw(
        # `statement` is the caller's SQL text, never data: its values are parameters like these.
        "WITH source AS (" + statement + ")"  # noqa: S608
        """
        INSERT INTO outbox_message (task, payload, correlation_id, created_at, enqueued_at, attempts)
        SELECT {}, jsonb_build_object({}::text, source.id), {}, {}, {}, 0 FROM source
        RETURNING id
        """,
        *args,
        task.name,
        key,
        current_correlation_id(),
        now,
        now,
    )
    return [int(row["id"]) for row in rows]


async def send(redis: ArqRedis, message_ids: list[int]) -> None:
    """Enqueue committed messages now; whatever fails here is marked unsent, for the sweeper."""
    for position, message_id in enumerate(message_ids):
        try:
            await redis.enqueue_job(JOB, message_id, _job_id=job_id(message_id))
        except Exception as exc:
            unsent = message_ids[position:]
            log.warning("outbox send deferred to the sweeper", error=str(exc), ids=unsent)
            try:
                await OutboxMessage.update({OutboxMessage.enqueued_at: None}).where(
                    OutboxMessage.id.is_in(unsent)
                )
            except Exception as failed:  # then the sweeper resends them after outbox_redeliver_seconds
                log.warning("outbox messages left marked sent", error=str(failed), ids=unsent)
            return


async def send_pending(redis: ArqRedis, redeliver_after: timedelta, limit: int = 500) -> int:
    """Enqueue messages never sent, or sent long ago and still not done (Redis lost them, or the
    worker running one died)."""
    cutoff = datetime.now(UTC) - redeliver_after
    async with DB.transaction():
        # Two sweepers at once each take rows the other has not locked. A message leased to a
        # worker is that worker's until the lease lapses (then it is presumed dead).
        rows = await OutboxMessage.raw(
            """
            SELECT id FROM outbox_message
            WHERE done_at IS NULL AND failed_at IS NULL
              AND (enqueued_at IS NULL OR enqueued_at < {})
              AND (locked_until IS NULL OR locked_until < now())
            ORDER BY id LIMIT {} FOR UPDATE SKIP LOCKED
            """,
            cutoff,
            limit,
        )
        ids = [row["id"] for row in rows]
        sent = 0
        for message_id in ids:
            if await _resend(redis, message_id):
                sent += 1
        if ids:
            await OutboxMessage.update({OutboxMessage.enqueued_at: datetime.now(UTC)}).where(
                OutboxMessage.id.is_in(ids)
            )
    if sent:
        log.info("outbox sweeper sent messages", count=sent)
    return sent


async def _resend(redis: ArqRedis, message_id: int) -> bool:
    """Enqueue the message's job again, or free it in the queue; whether it will now run.

    arq refuses a job id it still holds, and a job whose worker died stays held: its in-progress
    marker lives for the longest job timeout of the worker (an hour, a daily cron's), and its job
    key for a day. The message's lease has lapsed, so no live worker runs it: the marker is the
    dead one's and is dropped, and a job key left with no place in the queue is dropped too. A
    worker that was only slow still holds nothing that matters: claiming decides who runs it."""
    key = job_id(message_id)
    freed = await redis.delete(in_progress_key_prefix + key)
    if await redis.enqueue_job(JOB, message_id, _job_id=key):
        return True
    if await redis.zscore(default_queue_name, key) is not None:
        return bool(freed)  # queued: the next free worker takes it, now that nobody holds it
    await redis.delete(job_key_prefix + key)
    return await redis.enqueue_job(JOB, message_id, _job_id=key) is not None


@dataclass(frozen=True)
class Claimed:
    id: int
    task: str
    payload: dict[str, Any]
    correlation_id: str | None
    attempts: int


async def claim(message_id: int, lease: timedelta) -> Claimed | None:
    """The message, leased to this worker, if it still needs doing and nobody else holds it."""
    rows = await OutboxMessage.raw(
        """
        UPDATE outbox_message SET attempts = attempts + 1, locked_until = now() + {}
        WHERE id = {} AND done_at IS NULL AND failed_at IS NULL
          AND (locked_until IS NULL OR locked_until < now())
        RETURNING id, task, payload, correlation_id, attempts
        """,
        lease,
        message_id,
    )
    if not rows:
        return None
    row = rows[0]
    payload = msgspec.json.decode(row["payload"])
    return Claimed(row["id"], row["task"], payload, row["correlation_id"], row["attempts"])


async def mark_done(message_id: int) -> None:
    await OutboxMessage.update(
        {OutboxMessage.done_at: datetime.now(UTC), OutboxMessage.locked_until: None}
    ).where(OutboxMessage.id == message_id)


async def mark_failed(message_id: int, error: str) -> None:
    await OutboxMessage.update(
        {OutboxMessage.failed_at: datetime.now(UTC), OutboxMessage.last_error: error[:2000]}
    ).where(OutboxMessage.id == message_id)


async def release(message_id: int, error: str) -> None:
    """Give the lease back after a failed attempt, so the retry can take it."""
    await OutboxMessage.update(
        {OutboxMessage.last_error: error[:2000], OutboxMessage.locked_until: None}
    ).where(OutboxMessage.id == message_id)
