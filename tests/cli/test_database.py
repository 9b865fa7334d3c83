"""The `medpay` commands refuse, in one line, a database that is missing, not migrated or out of
reach, and create nothing: an operator with the wrong MEDPAY_VAR_DIR or DATABASE_URL learns it at once."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from backend.platform import embedded
from backend.settings import Settings
from tests.servers import ROOT, medpay

COMMANDS = [
    ["audit"],
    ["seed"],
    ["load-policies", str(ROOT / "backend" / "billing" / "policies.toml")],
    ["partner", "create", "--kind", "bank", "--name", "a bank", "--scopes", "credit:callback"],
]


def one_line_error(done) -> str:
    assert done.returncode != 0, done.stdout
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_var_dir_without_data_is_named_and_left_alone(tmp_path: Path, command) -> None:
    var = tmp_path / "elsewhere"
    env = {"DATABASE_URL": None, "MEDPAY_VAR_DIR": str(var)}

    done = medpay(*command, env=env, cwd=tmp_path)

    line = one_line_error(done)
    assert f"no medpay database under {var / 'postgres'}" in line
    assert "DATABASE_URL" in line
    assert not var.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_empty_data_directory_is_not_initialised(tmp_path: Path) -> None:
    (tmp_path / "var" / "postgres").mkdir(parents=True)

    done = medpay("audit", env={"DATABASE_URL": None}, cwd=tmp_path)

    assert "no medpay database under var/postgres" in one_line_error(done)
    assert list((tmp_path / "var" / "postgres").iterdir()) == []


async def public_tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


@pytest.fixture
async def empty_database(settings: Settings):
    """A database of its own on the tests' server, with nothing in it."""
    name = "medpay_cli_empty"
    await embedded.drop_database(settings.database.url, name)
    await embedded.ensure_database(settings.database.url, name)
    try:
        yield urlunsplit(urlsplit(settings.database.url)._replace(path=f"/{name}"))
    finally:
        await embedded.drop_database(settings.database.url, name)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_an_unmigrated_database_is_named_and_left_empty(empty_database: str, command) -> None:
    done = await asyncio.to_thread(medpay, *command, env={"DATABASE_URL": empty_database})

    line = one_line_error(done)
    pending = r"/medpay_cli_empty is not migrated \(\d+ migrations pending\): run `medpay migrate`$"
    assert re.search(pending, line)
    assert "@" not in line  # no credentials in the message
    assert await public_tables(empty_database) == set()


async def test_a_migration_not_applied_is_caught(empty_database: str) -> None:
    env: dict[str, str | None] = {"DATABASE_URL": empty_database}
    assert (await asyncio.to_thread(medpay, "migrate", env=env)).returncode == 0
    assert (await asyncio.to_thread(medpay, "audit", env=env)).returncode == 0
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(
            "DELETE FROM migration WHERE id = (SELECT max(id) FROM migration WHERE app_name = 'billing')"
        )
    finally:
        await connection.close()

    line = one_line_error(await asyncio.to_thread(medpay, "audit", env=env))

    assert "is not migrated (1 migration pending): run `medpay migrate`" in line


async def test_a_database_that_does_not_exist_is_one_line(settings: Settings) -> None:
    url = urlunsplit(urlsplit(settings.database.url)._replace(path="/medpay_nowhere"))

    done = await asyncio.to_thread(medpay, "audit", env={"DATABASE_URL": url})

    assert "cannot open the database" in (line := one_line_error(done))
    assert '"medpay_nowhere" does not exist' in line


@pytest.fixture
def unreachable_database() -> Iterator[str]:
    """A database URL whose port nothing listens on: a socket holds the port (bound, never
    listening, so a connection is refused) for the test's length, so no other process takes it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"postgresql://postgres:secret@127.0.0.1:{held.getsockname()[1]}/medpay"


@pytest.mark.parametrize("command", [["audit"], ["migrate"], ["seed"]], ids=lambda c: c[0])
async def test_a_database_that_cannot_be_reached_is_one_line(unreachable_database: str, command) -> None:
    done = await asyncio.to_thread(medpay, *command, env={"DATABASE_URL": unreachable_database})

    line = one_line_error(done)
    port = urlsplit(unreachable_database).port
    assert line.startswith(f"Error: cannot open the database 127.0.0.1:{port}/medpay: ")
    assert "cannot connect to PostgreSQL" in line
    assert "secret" not in line  # no credentials in the message
