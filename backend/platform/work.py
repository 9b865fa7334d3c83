"""Kinds of background work, declared by each domain in its `jobs.py` and gathered by `workers/`.

Three kinds: a `Job` is enqueued by name with ids as arguments (now, or deferred); a `Task` runs
an outbox message (`outbox.add(task, payload)` inside the business transaction); a `Cron`
runs on a schedule and catches up on what was missed. Every one runs under the correlation id of
what caused it: the request or job that enqueued it, the outbox row's, or a new one per cron run.
arq may run any of them twice: each re-reads the state it acts on and changes it by guarded updates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from backend.platform.logging import current_correlation_id
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Job:
    """`run(runtime, *args)`; `key(*args)` is its deterministic job id: arq holds one job per id."""

    name: str
    run: Callable[..., Awaitable[str]]
    key: Callable[..., str]
    timeout: int = 60
    max_tries: int = 5

    async def enqueue(
        self, rt: Runtime, *args: str, defer_until: datetime | None = None, suffix: str = ""
    ) -> bool:
        """Enqueue under the caller's correlation id; False when Redis refused or failed (the
        domain's sweeper finds the work from PostgreSQL, which is the truth)."""
        job_id = self.key(*args) + suffix
        try:
            queued = await rt.redis.enqueue_job(
                self.name,
                *args,
                _job_id=job_id,
                _defer_until=defer_until,
                correlation_id=current_correlation_id(),
            )
        except Exception as exc:
            log.warning("job left to the sweeper", job=self.name, job_id=job_id, error=str(exc))
            return False
        return queued is not None


@dataclass(frozen=True)
class Task:
    """Runs an outbox message's payload; `give_up` ends its subject when it fails for good."""

    name: str
    run: Callable[[Runtime, dict[str, Any]], Awaitable[None]]
    give_up: Callable[[Runtime, dict[str, Any], str], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Cron:
    """`run(runtime)` at the times of `at` (arq's cron fields: second, minute, hour...)."""

    run: Callable[[Runtime], Awaitable[int]]
    at: dict[str, set[int]] = field(default_factory=dict)
    run_at_startup: bool = False
    timeout: int = 60

    @property
    def name(self) -> str:
        return self.run.__name__


Work = Job | Task | Cron
