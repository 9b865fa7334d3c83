"""The PostgreSQL connection pool and migrations, shared by the web app, workers and the CLI."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from contextlib import redirect_stdout
from typing import Any

import asyncpg
from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration

from backend.piccolo_conf import APP_REGISTRY, DB
from backend.platform.errors import DatabaseUnavailable
from backend.settings import DatabaseSettings


def use_database(url: str) -> None:
    """Point the engine at `url`; call before the pool opens."""
    DB.config = {"dsn": url}


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection given back to the pool needs beyond asyncpg's own clean-up (which rolls
    back a transaction left open): nothing. asyncpg's default also sends `SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, a round trip
    after each query run outside a transaction, undoing session state this code never makes: its
    advisory locks are transaction-scoped (`pg_advisory_xact_lock`), it declares no cursors,
    listens to nothing and sets nothing beyond the transaction (`SET TRANSACTION`)."""


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """A new connection for the pool. One that cannot be opened (refused, unreachable, timed out) is
    DatabaseUnavailable, which a request answers as a 503: asyncpg raises these as plain OSErrors,
    which say nothing of where they came from."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except OSError as exc:  # TimeoutError too
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc!r}") from exc


async def open_pool(
    settings: DatabaseSettings, *, on_connect: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
) -> None:
    """Open the engine's pool; `on_connect` runs on each new connection (tests count queries with it)."""
    if settings.url:
        use_database(settings.url)
    if DB.pool is None:
        await DB.start_connection_pool(
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            reset=_keep_session,
            init=on_connect,
            connect=_connect,
        )


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


async def pending_migrations() -> list[str]:
    """The migrations not applied yet, as `app:id`, found without writing: Piccolo's own check
    first creates its bookkeeping table, which would leave an empty database looking used."""
    ran: set[tuple[str, str]] = set()
    if await Migration.table_exists():
        rows = await Migration.select(Migration.app_name, Migration.name)
        ran = {(row["app_name"], row["name"]) for row in rows}
    files = BaseMigrationManager()
    return [
        f"{app.app_name}:{migration_id}"
        for app in APP_REGISTRY.app_configs.values()
        for migration_id in files.get_migration_ids(
            files.get_migration_modules(app.resolved_migrations_folder_path)
        )
        if (app.app_name, migration_id) not in ran
    ]


async def ping() -> None:
    await DB.run_ddl("SELECT 1")
