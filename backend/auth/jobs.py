"""Auth's background work: the security event of a revoked login; purging spent refresh tokens."""

from __future__ import annotations

from typing import Any

from backend.auth import service
from backend.platform.runtime import Runtime
from backend.platform.work import Cron, Task


async def _record_session_revoked(_: Runtime, payload: dict[str, Any]) -> None:
    await service.record_session_revoked(**payload)


async def purge_refresh_tokens(_: Runtime) -> int:
    """Drop refresh tokens long expired (kept a week past expiry for reuse detection)."""
    return await service.purge_expired_refresh_tokens()


SESSION_REVOKED = Task("auth.session_revoked", _record_session_revoked)

JOBS = [
    SESSION_REVOKED,
    Cron(purge_refresh_tokens, at={"hour": {3}, "minute": {17}, "second": {0}}, timeout=300),
]
