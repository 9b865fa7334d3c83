"""Auth's background work: a forced sign-out's security event; purging spent refresh tokens."""

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


async def _nothing_left_to_do(_: Runtime, __: dict[str, Any]) -> None:
    """A login's end is read from PostgreSQL, which the logout already wrote."""


SESSION_REVOKED = Task("auth.session_revoked", _record_session_revoked)
# Written by logouts of the release that listed ended logins in Redis; none is written any more.
# Kept so that the rows web processes of that release write during a deploy complete rather than
# fail for want of a handler; it can go a release later.
LOGIN_ENDED = Task("auth.login_ended", _nothing_left_to_do)

JOBS = [
    SESSION_REVOKED,
    LOGIN_ENDED,
    Cron(purge_refresh_tokens, at={"hour": {3}, "minute": {17}, "second": {0}}, timeout=300),
]
