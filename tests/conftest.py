"""Real PostgreSQL, Redis and sandbox partners for the whole session; a clean slate per test."""

from __future__ import annotations

import asyncio
import contextlib
import graphlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from litestar import Litestar

from backend.app import create_app
from backend.piccolo_conf import APP_REGISTRY, DB
from backend.platform import database
from backend.platform.logging import configure_logging
from backend.platform.runtime import Runtime, running
from backend.settings import Settings
from tests import servers
from workers.settings import worker_settings

pytest_plugins = ["tests.logscan"]  # no secret in any log line of the session


@pytest.fixture(scope="session")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("servers")
    with servers.postgres(tmp) as pg, servers.redis(tmp) as redis, servers.sandbox() as sandbox:
        yield {"database": pg, "redis": redis, "sandbox": sandbox}


@pytest.fixture(scope="session")
def settings(urls: dict[str, str]) -> Settings:
    env = {
        **os.environ,
        "MEDPAY_ENV": "test",
        "DATABASE_URL": urls["database"],
        "REDIS_URL": urls["redis"],
        "MEDPAY_SANDBOX_PORT": urls["sandbox"].rsplit(":", 1)[1],  # partner URLs follow it
        "MEDPAY_PARTNER_TIMEOUT_SECONDS": "2",
        "MEDPAY_LOG_LEVEL": "INFO",
    }
    return Settings.from_env(env)


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> None:
    database.use_database(settings.database.url)
    await database.migrate()


@pytest.fixture(scope="session")
async def runtime(settings: Settings, migrated: None) -> AsyncIterator[Runtime]:
    configure_logging(settings.app.log_level)
    async with running(settings) as rt:
        yield rt


@pytest.fixture(scope="session")
def app(settings: Settings, runtime: Runtime) -> Litestar:
    """The app, served in the tests' own event loop; its resources are the session's runtime."""
    application = create_app(settings)
    application.state.runtime = runtime
    return application


@pytest.fixture(scope="session")
async def session_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://medpay.test") as client:
        yield client


@pytest.fixture(scope="session")
async def sandbox_http(urls: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped well before the sandbox's server closes them (30 s), so a test
    # never sends on one the server is closing at that moment.
    limits = httpx.Limits(keepalive_expiry=5)
    async with httpx.AsyncClient(base_url=urls["sandbox"], timeout=10, limits=limits) as client:
        yield client


TABLES = [table._meta.tablename for app in APP_REGISTRY.app_configs.values() for table in app.table_classes]


@pytest.fixture(scope="session")
async def emptying(runtime: Runtime) -> str:
    """SQL that empties every table and restarts its ids, as `TRUNCATE ... RESTART IDENTITY` would.

    TRUNCATE costs a quarter of a second for the ~40 tables however few rows they hold (new files
    for every table and index); DELETE of a test's few rows costs a millisecond. The tables are
    emptied children first (their foreign keys as the database has them), then the sequences that
    handed out an id are set back.
    """
    async with DB.pool.acquire() as connection:
        references = await connection.fetch(
            "SELECT child.relname AS child, parent.relname AS parent FROM pg_constraint c "
            "JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid "
            "WHERE c.contype = 'f' AND c.conrelid <> c.confrelid AND child.relname = ANY($1::text[])",
            TABLES,
        )
        sequences = await connection.fetch(
            "SELECT s.oid FROM pg_class s JOIN pg_depend d ON d.classid = 'pg_class'::regclass "
            "AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
            "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND t.relname = ANY($1::text[])",
            TABLES,
        )
    parents: dict[str, set[str]] = {table: set() for table in TABLES}
    for row in references:
        parents[row["child"]].add(row["parent"])
    children_first = reversed(list(graphlib.TopologicalSorter(parents).static_order()))
    owned = ", ".join(str(row["oid"]) for row in sequences) or "0"
    deletes = "".join(f'DELETE FROM "{table}";' for table in children_first)  # noqa: S608 (our tables)
    restarts = f"SELECT setval(seqrelid, seqstart, false) FROM pg_sequence WHERE seqrelid IN ({owned})"  # noqa: S608
    return f"{deletes}{restarts} AND pg_sequence_last_value(seqrelid) IS NOT NULL"


@pytest.fixture(autouse=True)
async def clean_slate(
    request: pytest.FixtureRequest, runtime: Runtime, sandbox_http: httpx.AsyncClient, emptying: str
) -> None:
    """Every test starts with empty tables, an empty Redis and a sandbox with no faults."""
    async with DB.pool.acquire() as connection:  # one round trip: several statements, one transaction
        await connection.execute(emptying)
    await runtime.redis.flushdb()
    await sandbox_http.delete("/_sandbox/faults")
    await sandbox_http.delete("/_sandbox/calls")


@pytest.fixture
def client(session_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return session_client


@pytest.fixture
def run_worker(settings: Settings, runtime: Runtime) -> Any:
    """Run a burst worker until no job is due; returns it (see `jobs_complete` etc.).

    Jobs deferred a minute or more (a bill's expiry, a later payment check) would keep a burst
    worker waiting: they are set aside while it runs and put back after.
    """

    async def run(**overrides: Any) -> Worker:
        kwargs = {
            **worker_settings(settings),
            "ctx": {"settings": settings, "runtime": runtime},
            "on_startup": None,
            "on_shutdown": None,
            "cron_jobs": [],
            "burst": True,
            "poll_delay": 0,
            "handle_signals": False,
            **overrides,
        }
        worker = Worker(**kwargs)
        parked: dict[bytes, float] = {}
        done = asyncio.Event()

        async def park_later_jobs() -> None:
            # Stopped by `done`, never cancelled: a cancel between taking jobs off the queue and
            # noting them would lose them, and a parker left running would take later tests' jobs.
            while not done.is_set():
                later = await runtime.redis.zrangebyscore(
                    worker.queue_name, time.time() * 1000 + 60_000, "+inf", withscores=True
                )
                if later:
                    parked.update(later)
                    await runtime.redis.zrem(worker.queue_name, *(job for job, _ in later))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.01)

        parker = asyncio.create_task(park_later_jobs())
        try:
            await worker.main()
        finally:
            done.set()
            await parker
            await worker.close()
            if parked:
                await runtime.redis.zadd(worker.queue_name, parked)
        return worker

    return run
