"""A worker's Redis call is retried through an outage until `seconds` after it began, the
reconnections retried inside its attempts included: a lost connection waits out the stated
minute (`WORKER_REDIS_OUTAGE_SECONDS`), not a minute more for a reconnection that failed late."""

from __future__ import annotations

import asyncio

import pytest
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.platform.runtime import RetryFor


async def ignore(_error: Exception) -> None:
    """What redis-py does with a failure between attempts (disconnects); nothing to do here."""


def retry(seconds: float) -> RetryFor:
    return RetryFor(seconds, ExponentialBackoff(cap=0.01, base=0.001), (RedisConnectionError, OSError))


async def test_a_call_that_fails_for_a_while_gets_its_answer() -> None:
    policy, failures = retry(60), []

    async def command() -> str:
        if len(failures) < 3:
            failures.append(1)
            raise RedisConnectionError("Connection refused")
        return "PONG"

    assert await policy.call_with_retry(command, ignore) == "PONG"
    assert len(failures) == 3


async def test_a_reconnection_inside_an_attempt_keeps_to_the_calls_deadline() -> None:
    policy, reconnections = retry(0.2), []

    async def reconnect() -> None:
        reconnections.append(1)
        raise ConnectionRefusedError("Connect call failed")

    async def command() -> None:
        await asyncio.sleep(0.3)  # the attempt outlasts the whole call's time, then reconnects
        await policy.call_with_retry(reconnect, ignore)

    with pytest.raises(ConnectionRefusedError):
        await policy.call_with_retry(command, ignore)
    # Given up at its first failure, the call's time being spent; timed on its own, it would have
    # been retried for `seconds` more, and the command tried again after it.
    assert len(reconnections) == 1
