"""The inbox: verified callbacks stored before they are acknowledged, applied once by a job.

A callback is stored with a unique (source, event_id) and, in the same transaction, an outbox
message that applies it; so a repeated callback stores nothing new, and a job lost by Redis or
a crashed worker is sent again by the outbox sweeper. Applying must be idempotent in effect:
the state changes it makes are guarded in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from backend.platform.tables import InboxEvent


async def store(source: str, event_id: str, kind: str, payload: dict[str, Any]) -> int | None:
    """Record an event inside the caller's transaction; None when it was received before."""
    rows = await InboxEvent.raw(
        """
        INSERT INTO inbox_event (source, event_id, kind, payload, state, received_at)
        VALUES ({}, {}, {}, {}, 'received', now())
        ON CONFLICT (source, event_id) DO NOTHING RETURNING id
        """,
        source,
        event_id,
        kind,
        msgspec.json.encode(payload).decode(),
    )
    return int(rows[0]["id"]) if rows else None


async def load(inbox_id: int) -> dict[str, Any] | None:
    return await InboxEvent.select().where(InboxEvent.id == inbox_id).first()


async def mark(inbox_id: int, state: str, outcome: str) -> None:
    """`applied` (it changed something, or had already) or `ignored` (it must not), with why."""
    await InboxEvent.update(
        {InboxEvent.state: state, InboxEvent.outcome: outcome, InboxEvent.applied_at: datetime.now(UTC)}
    ).where(InboxEvent.id == inbox_id)
