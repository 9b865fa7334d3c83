"""Whether a login ended, as each patient request asks: PostgreSQL's answer, remembered per process.

`EndedLogins(clock)` is one process's memory, on a clock the test moves; the app's requests (its
logout) stand for another process. What each answer sends to PostgreSQL is counted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from backend.auth.jobs import LOGIN_ENDED
from backend.auth.logins import NOT_ENDED_SECONDS, EndedLogins
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.outbox import OutboxMessage
from backend.platform.runtime import Runtime
from tests.helpers import Client, login

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def login_of(tokens: dict[str, Any]) -> uuid.UUID:
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    return uuid.UUID(claims["sid"])


async def counted(answer: Awaitable[T]) -> tuple[T, int]:
    """`answer`, and how many statements it sent to PostgreSQL."""
    sent: list[str] = []

    def note(record: Any) -> None:
        sent.append(record.query)

    async with DB.transaction() as transaction:  # its queries go through this one connection
        transaction.connection.add_query_logger(note)
        try:
            result = await answer
        finally:
            transaction.connection.remove_query_logger(note)
    return result, len(sent)


async def test_a_login_ended_elsewhere_is_seen_once_not_ended_is_no_longer_believed(
    client: Client, sandbox_http, settings
) -> None:
    tokens = await login(client, sandbox_http, settings)
    clock = Clock()
    here = EndedLogins(clock)

    assert await counted(here.ended(login_of(tokens))) == (False, 1)
    assert await counted(here.ended(login_of(tokens))) == (False, 0)  # the hot path: no statement

    await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    assert await counted(here.ended(login_of(tokens))) == (False, 0)  # believed a while yet
    clock.now += NOT_ENDED_SECONDS - 0.001
    assert await counted(here.ended(login_of(tokens))) == (False, 0)
    clock.now += 0.001
    assert await counted(here.ended(login_of(tokens))) == (True, 1)
    clock.now += 86_400
    assert await counted(here.ended(login_of(tokens))) == (True, 0)  # ended stays ended


async def test_a_login_ended_here_while_postgres_answers_stays_ended(
    client: Client, sandbox_http, settings
) -> None:
    tokens = await login(client, sandbox_http, settings)
    here = EndedLogins(Clock())
    asking = asyncio.create_task(here.ended(login_of(tokens)))
    await asyncio.sleep(0)  # it asks PostgreSQL, which has not answered yet
    assert not asking.done()

    here.end(login_of(tokens))  # a logout on this process committed meanwhile

    assert await asking is True
    assert await counted(here.ended(login_of(tokens))) == (True, 0)


async def test_a_login_never_written_has_ended(runtime: Runtime) -> None:
    here = EndedLogins(Clock())

    assert await counted(here.ended(uuid.uuid4())) == (True, 1)


async def test_a_login_ended_message_of_the_previous_release_completes(runtime: Runtime, run_worker) -> None:
    """Logouts of the release that listed ended logins in Redis wrote these; there is nothing left
    to do for one, and it must not fail for want of a handler."""
    async with DB.transaction():
        message_id = await outbox.add(LOGIN_ENDED, {"family_id": str(uuid.uuid4())})
    await outbox.send(runtime.redis, [message_id])

    worker = await run_worker()

    assert worker.jobs_complete == 1
    rows = await OutboxMessage.select(OutboxMessage.done_at, OutboxMessage.failed_at)
    assert [(row["done_at"] is not None, row["failed_at"]) for row in rows] == [(True, None)]
