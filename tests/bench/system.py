"""`medpay bench`: the whole system benchmarked as production runs it, in one run.

    medpay bench [--seconds 10] [--clients 32] [--web-workers auto | 1,2] [--arq-workers 1]
                 [--scenarios pay,presettle,...] [--sweep 1,2,4,...,128] [--json PATH]

1. Starts every piece as an OS process of its own: PostgreSQL and Redis (embedded in a temp dir,
   or a throw-away `medpay_bench` database on DATABASE_URL's server and REDIS_URL's database,
   flushed), `medpay migrate` and `medpay seed`, the sandbox partners and bank as `medpay dev`
   starts them, arq workers, and `medpay web` (granian) with MEDPAY_WEB_WORKERS=N, log level
   WARNING; durable commits. Everything is stopped at the end, on Ctrl-C or failure too.
2. Seeds patients and bills through the HTTP API (timed, not part of the figures).
3. Chooses N by measurement (`auto`: a short presettle probe at N = 1, 2, 3), or runs the core
   scenarios under each N of a list.
4. Drives each scenario from a load generator of its own (wrk with tests/bench/lua/*.lua over
   requests written out beforehand; the asyncio driver tests/bench/driver.py for pay with WeChat
   Pay), measuring its CPU and the server side's.
5. Measures the ceilings: GET /health/live on the same server and N; pgbench of the pay SQL
   (tests/bench/pay.pgbench) on a copy of the bench database.
6. Optionally sweeps pay and presettle over client counts (tests/bench/plot.py plots that).
7. Ends with `medpay audit`, which must be clean; prints the table, writes the JSON.

Scenarios and what each measures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from backend.settings import Settings
from miniprogram_stub.api import Medpay
from tests.bench import arrange, ceilings, report, scenarios, stack
from tests.bench.load import Measured
from tests.bench.scenarios import CORE, SCENARIOS, Bench, say, show

PROBE_WORKERS = (1, 2, 3)


@dataclass
class Figures:
    """What a run measured, for the table and the JSON file."""

    chosen_web_workers: int
    probes: list[Measured]
    results: list[Measured]
    ceilings: list[Measured]
    sweep: list[Measured]
    seeding_s: dict[str, float]


class Phases:
    """Wall time per phase of the run, printed as each ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        say(f"== {name}")
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.seconds[name] = self.seconds.get(name, 0.0) + spent
            say(f"   ({name}: {spent:.1f} s)")


def counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every number at least 1")
    return values


def names(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {unknown}: choose among {', '.join(SCENARIOS)}"
        )
    return chosen


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="medpay bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each scenario's run (default 10)")
    parser.add_argument(
        "--clients", type=int, default=32, help="concurrent clients (connections; default 32)"
    )
    parser.add_argument(
        "--web-workers",
        default="auto",
        help="`auto`: probe N = 1, 2, 3 and keep the best; or a list (1,2): the core scenarios under each",
    )
    parser.add_argument("--arq-workers", type=int, default=1, help="arq worker processes (default 1)")
    parser.add_argument("--scenarios", type=names, default=list(SCENARIOS), help=", ".join(SCENARIOS))
    parser.add_argument(
        "--sweep", type=counts, default=[], help="client counts for pay and presettle, e.g. 1,2,4,8"
    )
    parser.add_argument("--sweep-seconds", type=float, default=5.0, help="each sweep run (default 5)")
    parser.add_argument("--probe-seconds", type=float, default=3.0, help="each N's probe (default 3)")
    parser.add_argument("--patients", type=int, default=256, help="employees seeded at first (default 256)")
    parser.add_argument("--seed-concurrency", type=int, default=32, help="seeding requests in flight")
    parser.add_argument(
        "--callbacks-max", type=int, default=1000, help="at most this many callbacks (default 1000)"
    )
    parser.add_argument("--json", type=Path, default=Path("var/bench.json"), help="default var/bench.json")
    args = parser.parse_args()
    args.workers_list = None if args.web_workers == "auto" else counts(args.web_workers)
    if args.clients < 1 or args.seconds <= 0 or args.arq_workers < 1 or args.patients < 1:
        parser.error("--clients, --seconds, --arq-workers and --patients must be positive")
    return args


def machine(st: stack.Stack) -> dict[str, Any]:
    """What the figures were measured on."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )

    def version(*command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"

    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": version("wrk", "-v"),
        "pgbench": version(ceilings.pgbench_binary(), "--version"),
        "database": "embedded" if not os.environ.get("DATABASE_URL") else "DATABASE_URL",
    }


async def choose_web_workers(bench: Bench, args: argparse.Namespace) -> tuple[int, list[Measured]]:
    """`auto`: a presettle probe at --clients under N = 1, 2, 3 (web restarted between); the best."""

    async def presettle() -> Measured:
        measured = await scenarios.presettle(bench, args.clients, args.probe_seconds)
        measured.scenario = "probe_presettle"
        return measured

    probes = [await on_fresh_web(bench, workers, presettle) for workers in PROBE_WORKERS]
    best = max(probes, key=lambda p: p.rate)
    say(
        "  web workers chosen: "
        + ", ".join(f"N={p.web_workers} {p.rate:,.0f}/s" for p in probes)
        + f" -> N={best.web_workers}"
    )
    return best.web_workers, probes


async def on_fresh_web(
    bench: Bench, workers: int, measure: Callable[[], Awaitable[Measured]], tries: int = 3
) -> Measured:
    """`measure` on the web server just (re)started with `workers`. Where one worker took nearly
    all the connections (granian's workers accept them as they come, and wrk opens them at
    once), it is restarted and `measure` made again, up to `tries` times in all: the choice of N
    and the JSON ceiling are then what each N can do, not what one worker of it can."""
    for attempt in range(1, tries + 1):
        await asyncio.to_thread(bench.stack.start_web, workers)
        measured = await measure()
        show(measured)
        if not measured.uneven:
            break
        if attempt < tries:
            say("    (again, the web server restarted)")
    return measured


async def run_scenario(bench: Bench, name: str, clients: int, seconds: float) -> list[Measured]:
    outcome = await SCENARIOS[name](bench, clients, seconds)
    done = outcome if isinstance(outcome, list) else [outcome]
    for measured in done:
        show(measured)
    bench.stack.check_alive()
    return done


async def seed_first(bench: Bench, args: argparse.Namespace) -> None:
    """The employees, and the bills presettle (and the probe) use; bills' creation rate is the
    first guess at how many bills a pay run needs."""
    world = bench.world
    await arrange.ensure_patients(world, "employee", args.patients)
    say(f"  {args.patients} employees logged in, bound, visited")
    began = time.perf_counter()
    count = max(2 * args.clients, min(512, args.patients))
    await arrange.ensure_bills(world, "presettle", "employee", count)
    bench.create_rate = count / (time.perf_counter() - began)
    say(f"  {count} bills created by the hospital's system ({bench.create_rate:,.0f}/s)")


async def sweep(bench: Bench, args: argparse.Namespace) -> list[Measured]:
    """pay and presettle at each client count of --sweep."""
    found = []
    for clients in args.sweep:
        for name in ("pay", "presettle"):
            found += await run_scenario(bench, name, clients, args.sweep_seconds)
    return found


async def measure(st: stack.Stack, args: argparse.Namespace, phases: Phases) -> Figures:
    """Everything between the system up and the audit. The
    sweep runs before the credit scenarios, whose payment checks go on in the background."""
    limits = httpx.Limits(max_connections=args.seed_concurrency + 8)
    async with (
        httpx.AsyncClient(base_url=st.api, timeout=120, limits=limits) as http,
        httpx.AsyncClient(base_url=st.sandbox, timeout=60, limits=limits) as sandbox,
    ):
        settings = Settings.from_env(st.env())
        world = await arrange.world(Medpay(http), sandbox, settings, st.database_url, args.seed_concurrency)
        bench = Bench(st, world, args.clients, args.seconds, callbacks_max=args.callbacks_max)
        with phases("seed patients and bills"):
            await seed_first(bench, args)
        probes: list[Measured] = []
        workers_list = args.workers_list
        if workers_list is None:
            with phases("choose web workers"):
                chosen, probes = await choose_web_workers(bench, args)
            workers_list = [chosen]
        ceilings_found: list[Measured] = []
        for workers in workers_list:
            with phases(f"core scenarios, web workers {workers}"):
                health = await on_fresh_web(
                    bench, workers, lambda: scenarios.health(bench, args.clients, args.seconds)
                )
                ceilings_found.append(health)
                for name in [n for n in args.scenarios if n in CORE]:
                    bench.results += await run_scenario(bench, name, args.clients, args.seconds)
        swept: list[Measured] = []
        if args.sweep:
            with phases(f"sweep, web workers {st.web_workers}"):
                swept = await sweep(bench, args)
        if others := [n for n in args.scenarios if n not in CORE]:
            with phases(f"other scenarios, web workers {st.web_workers}"):
                for name in others:
                    bench.results += await run_scenario(bench, name, args.clients, args.seconds)
        seeding = dict(bench.seeding)
        results = bench.results
    with phases("ceiling: pgbench of the pay SQL"):
        st.stop_web()
        st.stop_workers()
        pgbench = await ceilings.pgbench(st, args.clients, args.seconds)
        show(pgbench)
        ceilings_found.append(pgbench)
    return Figures(workers_list[-1], probes, results, ceilings_found, swept, seeding)


def audited(st: stack.Stack) -> str:
    """`medpay audit` on the bench database, as an operator runs it; the run fails if not clean."""
    out = st.medpay("audit").strip()
    if not out.startswith("audit clean"):
        raise SystemExit(f"medpay audit: {out}")
    return out


def keep_logs(st: stack.Stack) -> Path:
    """The processes' logs copied out of the temp dir (removed on the way out) into var/."""
    kept = stack.ROOT / "var" / "bench-logs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    shutil.copytree(st.tmp / "logs", kept, dirs_exist_ok=True)
    return kept


def conclude(args: argparse.Namespace, found: Figures, audit: str, phases: Phases, st: stack.Stack) -> None:
    """The table, and the whole run in the JSON file."""
    rows = report.rows(found.results, found.ceilings)
    swept = report.rows(found.sweep, found.ceilings)[: len(found.sweep)]
    say("")
    say(report.table([report.HEADER, *(row.cells() for row in rows)]))
    if swept:
        say("\nsweep:")
        say(report.table([report.HEADER[:12], *(row.cells()[:12] for row in swept)]))
    say(f"\n{audit}")
    say("phases: " + ", ".join(f"{name} {s:.0f} s" for name, s in phases.seconds.items()))
    say("seeding: " + ", ".join(f"{name} {s:.0f} s" for name, s in found.seeding_s.items()))
    document = {
        "command": ["medpay", "bench", *sys.argv[1:]],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(st),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "web_workers": {
            "mode": args.web_workers,
            "probe": [p.as_json() for p in found.probes],
            "chosen": found.chosen_web_workers,
        },
        "results": [row.as_json() for row in rows],
        "sweep": [row.as_json() for row in swept],
        "audit": audit,
        "phases_s": phases.seconds,
        "seeding_s": found.seeding_s,
    }
    report.write_json(args.json, document)
    say(f"written: {args.json}")


def run(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    phases = Phases()
    with tempfile.TemporaryDirectory(prefix="medpay-bench-") as tmp:
        with phases("start the system"), contextlib.ExitStack() as starting:
            st = starting.enter_context(stack.servers(Path(tmp)))
            starting.callback(st.close)
            say(f"  PostgreSQL {st.database_url}, Redis {st.redis_url}; logs in {tmp}/logs")
            applied = st.medpay("migrate").count("[forwards]")
            say(f"  medpay migrate: {applied} migrations applied; medpay seed: the demo partners and bank")
            st.medpay("seed")
            st.start_partners()
            st.start_workers(args.arq_workers)
            st.start_web((args.workers_list or [2])[0])
            running = starting.pop_all()
        with running:
            try:
                found = asyncio.run(measure(st, args, phases))
                with phases("medpay audit"):
                    audit = audited(st)
                    say(f"  {audit}")
            except BaseException as exc:
                ended = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                say(f"the run {ended}: the processes' logs are kept in {keep_logs(st)}")
                raise
            conclude(args, found, audit, phases, st)
    say(f"whole run: {time.perf_counter() - began:.0f} s")


def main() -> None:
    args = parse()
    if shutil.which("wrk") is None:
        raise SystemExit("medpay bench drives its load with wrk: install it first (apt-get install wrk)")
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    # A SIGTERM (the parent stopped) unwinds like Ctrl-C: everything started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    except KeyboardInterrupt:
        say("interrupted: every process the run started is stopped")
        sys.exit(130)


if __name__ == "__main__":
    main()
