"""The PostgreSQL connection pool and migrations, shared by the web app, workers and the CLI."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

from piccolo.apps.migrations.commands.forwards import run_forwards

from backend.piccolo_conf import DB
from backend.settings import DatabaseSettings


def use_database(url: str) -> None:
    """Point the engine at `url`; call before the pool opens."""
    DB.config = {"dsn": url}


async def open_pool(settings: DatabaseSettings) -> None:
    if settings.url:
        use_database(settings.url)
    if DB.pool is None:
        await DB.start_connection_pool(min_size=settings.pool_min, max_size=settings.pool_max)


async def close_pool() -> None:
    if DB.pool is not None:
        await DB.close_connection_pool()


async def migrate() -> str:
    """Apply every domain's pending migrations; return Piccolo's report."""
    report = io.StringIO()
    with redirect_stdout(report):
        result = await run_forwards("all")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}\n{report.getvalue()}")
    return report.getvalue()


async def ping() -> None:
    await DB.run_ddl("SELECT 1")
