"""The platform's own upkeep: sending what the outbox holds, purging old idempotency keys."""

from __future__ import annotations

from datetime import timedelta

from backend.platform import idempotency, outbox
from backend.platform.runtime import Runtime
from backend.platform.work import Cron


async def sweep_outbox(rt: Runtime) -> int:
    """Send what was never sent, or what Redis lost."""
    return await outbox.send_pending(rt.redis, timedelta(seconds=rt.settings.worker.outbox_redeliver_seconds))


async def purge_idempotency_keys(_: Runtime) -> int:
    return await idempotency.purge()


JOBS = [
    Cron(sweep_outbox, at={"second": {0, 15, 30, 45}}, run_at_startup=True),
    Cron(purge_idempotency_keys, at={"hour": {3}, "minute": {37}, "second": {0}}, timeout=300),
]
