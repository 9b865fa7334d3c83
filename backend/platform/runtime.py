"""The resources every entry point shares (web app, worker, CLI), opened and closed one way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings as ArqRedisSettings

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


def arq_redis_settings(url: str) -> ArqRedisSettings:
    if not url:
        raise AppError("REDIS_URL is not set; `medpay dev` starts a server and sets it")
    return ArqRedisSettings.from_dsn(url)


async def open_redis(url: str) -> ArqRedis:
    return await create_pool(
        arq_redis_settings(url),
        job_serializer=serialize_job,
        job_deserializer=msgspec.msgpack.decode,
    )


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
