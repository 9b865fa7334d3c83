"""Auth's background work: ending a revoked login's access tokens, its security event; purging
spent refresh tokens."""

from __future__ import annotations

from typing import Any

from backend.auth import service
from backend.platform.runtime import Runtime
from backend.platform.work import Cron, Task


async def _record_session_revoked(rt: Runtime, payload: dict[str, Any]) -> None:
    # The request ended the login's access tokens unless Redis failed it: again, to be sure.
    await service.end_access(rt, payload["family_id"])
    await service.record_session_revoked(**payload)


async def purge_refresh_tokens(_: Runtime) -> int:
    """Drop refresh tokens long expired (kept a week past expiry for reuse detection)."""
    return await service.purge_expired_refresh_tokens()


async def _end_access(rt: Runtime, payload: dict[str, Any]) -> None:
    await service.end_access(rt, payload["family_id"])


SESSION_REVOKED = Task("auth.session_revoked", _record_session_revoked)
# A logout's access tokens end when the request lists the login; this lists it again, for when
# Redis did not answer the request (the outbox's sweeper sends it once Redis is back).
LOGIN_ENDED = Task("auth.login_ended", _end_access)

JOBS = [
    SESSION_REVOKED,
    LOGIN_ENDED,
    Cron(purge_refresh_tokens, at={"hour": {3}, "minute": {17}, "second": {0}}, timeout=300),
]
