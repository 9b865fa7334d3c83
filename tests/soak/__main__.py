"""`./run soak`: every flow under load while processes are killed and partners misbehave, then
proof that nothing was lost or doubled.

    ./run soak [--minutes 10] [--clients 2] [--web-workers 2] [--arq-workers 2] [--seed S]

1. Starts the system as production runs it, each piece an OS process (tests/bench/stack.py):
   an embedded PostgreSQL and Redis of its own (it crashes them, so never the servers of
   DATABASE_URL / REDIS_URL), `medpay migrate` and `medpay seed`, the sandbox partners and bank,
   arq workers and `medpay web`.
2. Seeds patients (employees, residents, patients with a credit line) and a few small sessions
   through the API.
3. For `--minutes`: `--clients` loops on each flow (tests/soak/flows.py) while the chaos driver
   (tests/soak/chaos.py) SIGKILLs workers and the web server, crashes Redis and PostgreSQL and
   queues partner faults; a process that exits by itself is started again and counted.
4. Stops the load, clears the faults, waits until nothing is pending (`--settle-s`), and checks
   (tests/soak/verify.py): every accepted request has its effect, nothing is doubled, places are
   not overbooked, `medpay audit` is clean, and our books equal the channels' and the bank's.
   Prints the counts; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
import warnings
from datetime import timedelta
from pathlib import Path

import httpx
import msgspec

from backend.platform import database
from backend.settings import DatabaseSettings, Settings
from miniprogram_stub.api import Medpay
from miniprogram_stub.api import models as m
from tests.bench import arrange
from tests.bench.stack import Stack
from tests.booking.arrange import china_today, schedule, session
from tests.soak import verify
from tests.soak.chaos import Chaos, Postgres, Redis, say
from tests.soak.flows import Load

SESSIONS = 8  # small sessions over the coming days, both doctors: their places run out
PLACES = 25


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./run soak", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load and the faults go on")
    parser.add_argument("--clients", type=int, default=2, help="concurrent loops per flow (default 2)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--arq-workers", type=int, default=2)
    parser.add_argument("--patients", type=int, default=64, help="patients seeded of each kind (default 64)")
    parser.add_argument("--settle-s", type=float, default=420.0, help="how long to wait for the catch-up")
    parser.add_argument("--seed", type=int, default=None, help="the faults' random seed (printed)")
    parser.add_argument("--no-faults", action="store_true", help="the load alone, as a control run")
    return parser.parse_args()


async def seed_world(
    st: Stack, api: Medpay, sandbox: httpx.AsyncClient, patients: int
) -> tuple[arrange.World, list[int]]:
    settings = Settings.from_env(st.env())
    w = await arrange.world(api, sandbox, settings, st.database_url, concurrency=8)
    for kind in ("employee", "resident", "credit"):
        await arrange.ensure_patients(w, kind, patients)
    say(f"{patients} employees, {patients} residents and {patients} patients with a credit line ready")
    days = [china_today() + timedelta(days=d) for d in range(1, SESSIONS // 2 + 1)]
    run = uuid.uuid4().hex[:6]
    sessions = [
        session(doctor=doctor, day=day, capacity=PLACES, code=f"SOAK-{run}-{doctor}-{day}")
        for day in days
        for doctor in ("D001", "D002")
    ]
    await w.his.booking.publish_schedules(msgspec.convert(schedule(sessions), m.ScheduleUpsert))
    connection = await verify._connect(st.database_url)
    try:
        rows = await connection.fetch("SELECT id FROM booking_session WHERE code LIKE $1", f"SOAK-{run}-%")
    finally:
        await connection.close()
    say(f"{len(rows)} sessions of {PLACES} places published")
    return w, [int(r["id"]) for r in rows]


async def supervise(st: Stack, web_workers: int, stop: asyncio.Event, exited: dict[str, int]) -> None:
    """A process that exited by itself (not one the driver killed: that one is out of the table
    while it is down) is started again and counted."""
    while not stop.is_set():
        for name, process in list(st.processes.items()):
            if process.poll() is None or name in ("sandbox", "bank"):
                continue
            exited[name] = exited.get(name, 0) + 1
            say(f"{name} exited by itself ({process.returncode}): started again")
            st.processes.pop(name)
            if name == "web":
                await asyncio.to_thread(st.start_web, web_workers)
            else:
                st.spawn(name, [str(Path(sys.executable).parent / "arq"), "workers.main.WorkerSettings"])
        await asyncio.sleep(1)


async def soak(st: Stack, pg: Postgres, cache: Redis, args: argparse.Namespace) -> int:
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(base_url=st.api, timeout=30, limits=limits) as http,
        httpx.AsyncClient(base_url=st.sandbox, timeout=30, limits=limits) as sandbox,
        httpx.AsyncClient(base_url=st.bank, timeout=30) as bank,
    ):
        w, sessions = await seed_world(st, Medpay(http), sandbox, args.patients)
        load = Load(w, sandbox, sessions, args.clients)
        chaos = Chaos(st, pg, cache, args.web_workers, rng=random.Random(args.seed))
        stop, exited = asyncio.Event(), dict[str, int]()
        say(
            f"load on every flow for {args.minutes:g} min"
            + ("" if args.no_faults else f", faults seeded {args.seed}")
        )
        tasks = [
            asyncio.create_task(load.run(stop)),
            asyncio.create_task(supervise(st, args.web_workers, stop, exited)),
        ]
        if not args.no_faults:
            tasks.append(asyncio.create_task(chaos.run(stop)))
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks)), args.minutes * 60)
        stop.set()
        await asyncio.gather(*tasks)
        loaded_s = time.monotonic() - began
        say(f"load stopped after {loaded_s:.0f} s; faults cleared; waiting for the system to catch up")
        (await sandbox.delete("/_sandbox/faults")).raise_for_status()
        st.check_alive()
        left = await verify.settled(st.database_url, args.settle_s)
        settle_s = time.monotonic() - began - loaded_s
        database.use_database(st.database_url)
        await database.open_pool(DatabaseSettings(url=st.database_url, pool_min=1, pool_max=4))
        try:
            lost = await verify.lost(st.database_url, load.flows.values())
            doubled = await verify.doubled(st.database_url, sandbox, bank)
            books = await verify.books_agree(sandbox, bank)
        finally:
            await database.close_pool()
    audit = st.medpay("audit").strip()
    return conclude(load, chaos, exited, loaded_s, settle_s, left, lost, doubled, books, audit)


def show(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def conclude(
    load: Load,
    chaos: Chaos,
    exited: dict[str, int],
    loaded_s: float,
    settle_s: float,
    left: dict[str, int],
    lost: list[str],
    doubled: list[str],
    books: list[str],
    audit: str,
) -> int:
    show(f"\n== soak: {loaded_s / 60:.1f} min of load, caught up {settle_s:.0f} s after")
    show(f"{'flow':<9} {'attempts':>8} {'accepted':>8} {'gave up':>7} {'retries':>7}  refused; retried on")
    for f in load.flows.values():
        refused = ", ".join(f"{code} {n}" for code, n in f.refused.most_common()) or "-"
        retried = ", ".join(f"{kind} {n}" for kind, n in f.retried.most_common(4)) or "-"
        show(
            f"{f.name:<9} {f.attempts:>8} {f.accepted:>8} {f.gave_up:>7} {f.retries:>7}  {refused}; {retried}"
        )
    show("faults: " + "; ".join(chaos.report() or ["none"]))
    show("exited by themselves: " + (", ".join(f"{k} {v}" for k, v in exited.items()) or "none"))
    verdicts = [
        ("still pending after the catch-up", [f"{what}: {n}" for what, n in left.items()]),
        ("accepted but without their effect (lost)", lost),
        ("applied twice (doubled)", doubled),
        ("our books against the channels' and the bank's", books),
    ]
    for what, found in verdicts:
        show(f"{what}: {len(found)}" + "".join(f"\n    {p}" for p in found[:20]))
    show(f"medpay audit: {audit}")
    failed = not audit.startswith("audit clean") or any(found for _, found in verdicts)
    show("SOAK FAILED" if failed else "SOAK PASSED: nothing lost, nothing doubled, the books agree")
    return 1 if failed else 0


def main() -> None:
    args = parse()
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The partners retry their callbacks on a short schedule (the real ones wait minutes to hours),
    # and a partner's timeout is short, so that the catch-up fits the run.
    os.environ.update(
        SANDBOX_BANK_RETRY_DELAYS_S="0.5,1,2,4,8,16,30,30,30,30",
        SANDBOX_NOTIFY_RETRY_DELAYS_S="1,2,4,8,16,30",
        MEDPAY_PARTNER_TIMEOUT_SECONDS="3",
    )
    with tempfile.TemporaryDirectory(prefix="medpay-soak-") as tmp, contextlib.ExitStack() as running:
        pg = Postgres(Path(tmp) / "postgres")
        running.callback(pg.close)
        cache = Redis(Path(tmp) / "redis")
        running.callback(cache.close)
        st = Stack(tmp=Path(tmp), database_url=pg.url, admin_url=pg.admin_url, redis_url=cache.url)
        running.callback(st.close)
        say(f"PostgreSQL and Redis embedded in {tmp}; logs in {tmp}/logs")
        st.medpay("migrate")
        st.medpay("seed")
        st.start_partners()
        st.start_workers(args.arq_workers)
        st.start_web(args.web_workers)
        try:
            code = asyncio.run(soak(st, pg, cache, args))
        except KeyboardInterrupt:
            say("interrupted: every process the run started is stopped")
            code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
