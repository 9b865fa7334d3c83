"""Fault tests: real processes killed or cut off in the middle of their work, and the work finished
by what comes after them. Each test starts with the demo institutions seeded and ends with the
books audited and compared with the sandbox channels (`audited_books`, as the money tests).

Shared here: `holding`, a lock taken by another session, to stop a process at a statement one can
name and prove it is stuck there; `until`, polling for a condition with a deadline against hangs
(never a measurement of speed); `due_now` and `lapse`, the time that passes for a deferred job and
for a dead worker's claims.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from arq.constants import default_queue_name, in_progress_key_prefix

from backend.platform.runtime import Runtime
from backend.platform.tables import OutboxMessage
from tests.billing.conftest import audited_books

__all__ = ["audited_books"]

T = TypeVar("T")
# How long `until` waits by default: a guard against a hang (it often includes a process starting
# and importing on a busy machine), never a measurement: the poll ends as soon as the condition holds.
HANG_SECONDS = 60.0


async def until(condition: Callable[[], Awaitable[T]], what: str, within: float = HANG_SECONDS) -> T:
    """Poll `condition` until it gives something truthy, and give that; fail naming `what`."""
    deadline = time.monotonic() + within
    while True:
        found = await condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {within} s")
        await asyncio.sleep(0.02)


class Lock:
    """Rows or a table locked by another session's open transaction, and a session watching who
    waits for them (`pg_stat_activity` is read outside any transaction, so it is fresh each time)."""

    def __init__(self, holder: asyncpg.Connection, watcher: asyncpg.Connection, pid: int) -> None:
        self._holder, self._watcher, self.pid = holder, watcher, pid

    async def blocked(self, statement: str, within: float = HANG_SECONDS) -> int:
        """The backend waiting for this lock while it runs SQL containing `statement` (within the
        first kilobyte of it, which is what `pg_stat_activity` keeps): its pid."""
        seen: list[str] = []

        async def waiting() -> int | None:
            rows = await self._watcher.fetch(
                "SELECT pid, query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", self.pid
            )
            seen[:] = [row["query"] for row in rows]
            return next((row["pid"] for row in rows if statement in row["query"]), None)

        try:
            return await until(waiting, f"backend waiting for our lock in {statement!r}", within)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; waiting for it: {seen}") from None

    async def release(self) -> None:
        if self._holder.is_in_transaction():
            await self._holder.execute("ROLLBACK")

    async def ended(self, pid: int) -> None:
        """Until backend `pid` has ended: a killed client's open transaction is rolled back then."""

        async def gone() -> bool:
            return not await self._watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )

        await until(gone, f"end of backend {pid}")


@asynccontextmanager
async def holding(database_url: str, statement: str, *args: Any) -> AsyncIterator[Lock]:
    """`statement` (`SELECT ... FOR UPDATE`, `LOCK TABLE ...`) run in a transaction held open until
    `release()` or the end of the block."""
    holder = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute(statement, *args)
        lock = Lock(holder, watcher, await holder.fetchval("SELECT pg_backend_pid()"))
        try:
            yield lock
        finally:
            await lock.release()
    finally:
        await holder.close()
        await watcher.close()


async def due_now(runtime: Runtime, job_id_prefix: str) -> None:
    """The deferred jobs whose ids start with `job_id_prefix` come due now, as the clock would bring
    them. (One that Redis lost, or that was never enqueued, is the sweepers' to find.)"""
    queued = [job.decode() for job in await runtime.redis.zrange(default_queue_name, 0, -1)]
    due = {job: int(time.time() * 1000) for job in queued if job.startswith(job_id_prefix)}
    if due:
        await runtime.redis.zadd(default_queue_name, due)


async def lapse(runtime: Runtime) -> None:
    """A dead worker's claims lapse, as they do with time: its outbox leases, and arq's in-progress
    markers of the jobs it was running (which arq then runs again). No other worker shares the
    tests' Redis, so every marker is the dead one's."""
    await OutboxMessage.raw(
        "UPDATE outbox_message SET locked_until = now() - interval '1 second' "
        "WHERE locked_until IS NOT NULL AND done_at IS NULL"
    )
    markers = [key async for key in runtime.redis.scan_iter(match=f"{in_progress_key_prefix}*")]
    if markers:
        await runtime.redis.delete(*markers)
