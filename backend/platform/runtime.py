"""The resources every entry point shares (web app, worker, CLI), opened and closed one way."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from arq import ArqRedis
from arq.connections import RedisSettings as ArqRedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.partners.clients import PartnerClients
from backend.platform import database
from backend.platform.errors import AppError
from backend.platform.tokens import TokenKeys
from backend.platform.vault import Vault
from backend.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    redis: ArqRedis
    partners: PartnerClients
    tokens: TokenKeys
    vault: Vault


# arq stores a failed job's exception as its result: keep its repr rather than fail to encode it.
serialize_job = msgspec.msgpack.Encoder(enc_hook=repr).encode


# Redis is a transport, PostgreSQL the truth: what a request sends through Redis (outbox messages,
# jobs) is found again by the sweepers, so a request never waits long on it. A call that cannot
# connect, or has no answer, in this time fails (a Redis that stopped answering, not only one that
# refuses connections); without it a request would wait as long as the outage lasts. The same as
# the readiness probe's limit (`health.CHECK_TIMEOUT_SECONDS`).
REDIS_TIMEOUT_SECONDS = 2.0
# A worker, by contrast, waits a Redis outage out, for about a minute (then it exits with the error,
# for its supervisor to start it again): arq's worker otherwise exits at the first lost connection
# and never comes back.
WORKER_REDIS_OUTAGE_SECONDS = 60.0

T = TypeVar("T")


# The deadline of the retried call under way in this task: a reconnection retried inside one of a
# command's attempts keeps to the command's deadline rather than start one of its own.
_retry_deadline: ContextVar[float] = ContextVar("redis_retry_deadline", default=math.inf)


class RetryFor(Retry):
    """redis-py's Retry bounded by time rather than by count: a call is retried with backoff until
    `seconds` have passed since it began, the reconnections retried inside its attempts included.
    Counted, the retries of a command and those of the reconnection inside each of its attempts
    multiply (40 and 40: most of an hour); each timed from its own first failure, they add up (a
    reconnection failing first in the command's last attempt takes a minute more)."""

    def __init__(self, seconds: float, backoff: AbstractBackoff, errors: tuple[type[Exception], ...]) -> None:
        super().__init__(backoff, -1, errors)  # type: ignore[arg-type]  # typed as RedisErrors only
        self.seconds, self.pause, self.errors = seconds, backoff, errors

    def update_supported_errors(self, specified_errors: list[Any]) -> None:
        super().update_supported_errors(specified_errors)
        self.errors = tuple({*self.errors, *specified_errors})

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]) -> T:
        self.pause.reset()  # type: ignore[no-untyped-call]
        failures, deadline = 0, min(time.monotonic() + self.seconds, _retry_deadline.get())
        within = _retry_deadline.set(deadline)
        try:
            while True:
                try:
                    return await do()
                except self.errors as error:
                    failures += 1
                    await fail(error)  # type: ignore[arg-type]
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    await asyncio.sleep(min(self.pause.compute(failures), left))
        finally:
            _retry_deadline.reset(within)


def arq_redis_settings(url: str) -> ArqRedisSettings:
    """The worker's connection to its queue (arq's own pool): it rides out a Redis outage."""
    if not url:
        raise AppError("REDIS_URL is not set; `medpay dev` starts a server and sets it")
    settings = ArqRedisSettings.from_dsn(url)
    # OSError: a refused connection is raised as such while redis-py connects (and retried there).
    errors = (RedisConnectionError, RedisTimeoutError, OSError)
    settings.retry = RetryFor(WORKER_REDIS_OUTAGE_SECONDS, ExponentialBackoff(cap=2.0, base=0.1), errors)
    settings.retry_on_error = list(errors)
    settings.conn_retries = 0  # the retry above waits for the first connection too
    return settings


async def open_redis(url: str) -> ArqRedis:
    """The Redis client of requests and jobs: quick to fail, never retried (see above). Nothing is
    sent on opening, so a process starts while Redis is down (`/health/ready` tells)."""
    if not url:
        raise AppError("REDIS_URL is not set; `medpay dev` starts a server and sets it")
    redis: ArqRedis = ArqRedis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    redis.job_serializer = serialize_job
    redis.job_deserializer = msgspec.msgpack.decode
    return redis


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    await database.open_pool(settings.database)
    redis = await open_redis(settings.redis.url)
    partners = PartnerClients.open(settings)
    try:
        yield Runtime(settings, redis, partners, TokenKeys(settings.auth), Vault(settings.vault))
    finally:
        await partners.aclose()
        await redis.aclose()
        await database.close_pool()
