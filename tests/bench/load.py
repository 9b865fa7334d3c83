"""The load generators of `medpay bench`, each a process of its own: wrk with a Lua script over
requests written out beforehand, or the asyncio driver (tests/bench/driver.py) for what wrk cannot
do. Each run reports what it measured with the CPU it cost: its own and the server side's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.stack import ROOT, CpuMeter, Stack

LUA = Path(__file__).resolve().parent / "lua"
MARK = "BENCH_RESULT "


@dataclass
class Measured:
    """One scenario's figures: operations per second, latency, answers, and the CPU spent."""

    scenario: str
    web_workers: int
    clients: int
    ops: int
    seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    errors: int  # answers not expected by the scenario, and socket errors and timeouts
    loadgen_cores: float
    server_cores: dict[str, float]
    exhausted: bool = False  # the run used up its data before its time (count-limited runs)
    uneven: bool = False  # one web worker did most of the work (see `note_imbalance`)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def server_total(self) -> float:
        return sum(v for k, v in self.server_cores.items() if k != "partners" and "." not in k)

    def note_imbalance(self) -> None:
        """Say so when one web worker did most of the work: wrk's connections, opened at once and
        kept, go to whichever worker accepts them, and may all go to one."""
        each = {k: v for k, v in self.server_cores.items() if k.startswith("web.")}
        total = sum(each.values())
        if len(each) < 2 or total < 0.1:
            return
        name, most = max(each.items(), key=lambda item: item[1])
        if most / total >= 0.8:
            self.uneven = True
            self.notes.append(
                f"web workers unevenly loaded: {name} did {most / total:.0%} of the web server's CPU "
                "(the connections went to whichever worker accepted them)"
            )

    def as_json(self) -> dict[str, Any]:
        return {
            **vars(self),
            "ops_per_s": round(self.rate, 1),
            "server_cores_total": round(self.server_total, 2),
        }


def lines(rows: Iterable[Iterable[str]]) -> str:
    """Items of a data file: fields separated by tabs, one item a line (no field holds either)."""
    out = []
    for row in rows:
        fields = list(row)
        assert not any("\t" in f or "\n" in f for f in fields), fields
        out.append("\t".join(fields))
    return "\n".join(out) + "\n"


def request_line(method: str, path: str, body: str = "", **headers: str) -> list[str]:
    """One request of tests/bench/lua/requests.lua: METHOD, PATH, BODY, then `Name: value`s."""
    return [method, path, body, *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]


def wrk(
    stack: Stack,
    script: str,
    clients: int,
    seconds: float,
    data: str = "",
    *,
    once: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], float, dict[str, float], float]:
    """Run wrk (`-t` 2 or fewer, `--timeout` 30 s: a slow answer counts, late) with
    tests/bench/lua/<script>; `data` is the items' text. Returns (its JSON line, its own CPU as
    cores, the server side's cores, wall seconds). A "once" run ends when every thread has used
    up its share, or at `seconds`."""
    threads = max(1, min(2, clients))
    if len(data.splitlines()) < threads and script == "requests.lua":
        raise ValueError(f"{script} needs an item for each of its {threads} threads")
    with tempfile.TemporaryDirectory(prefix="wrk-", dir=stack.tmp) as scratch:
        work = Path(scratch)
        (work / "data.tsv").write_text(data)
        done = work / "done"
        done.mkdir()
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA / script),
            stack.api,
        ]
        environment = {
            **os.environ,
            "BENCH_LUA": str(LUA),
            "BENCH_DATA": str(work / "data.tsv"),
            "BENCH_THREADS": str(threads),
            "BENCH_MODE": "once" if once else "cycle",
            "BENCH_DONE_DIR": str(done),
            **(env or {}),
        }
        out = work / "out.txt"
        with CpuMeter(server_groups(stack)) as server, out.open("wb") as stdout:
            process = subprocess.Popen(command, env=environment, stdout=stdout, stderr=subprocess.STDOUT)
            own = wait_measured(process, lambda: once and len(list(done.iterdir())) >= threads)
        text = out.read_text()
    found = [line[len(MARK) :] for line in text.splitlines() if line.startswith(MARK)]
    if process.returncode != 0 or not found:
        raise SystemExit(f"wrk {script} failed ({process.returncode}):\n{text[-3000:]}")
    return json.loads(found[-1]), own / server.wall, server.cores, server.wall


def wait_measured(process: subprocess.Popen[bytes], finished: Any = None) -> float:
    """Wait for a child; its CPU seconds (utime + stime, from wait4: its own rusage). `finished()`
    true ends it early with SIGINT (wrk then reports as at its deadline)."""
    interrupted = False
    while finished is not None:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if not interrupted and finished():
            process.send_signal(signal.SIGINT)
            interrupted = True
        time.sleep(0.05)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def server_groups(stack: Stack) -> dict[str, list[int]]:
    """The server side's groups of processes; "partners" (the sandboxes) and each web worker on
    its own ("web.1", ...) are shown apart, not in the server's total."""
    return {**stack.server_roots(), "partners": stack.partner_roots(), **stack.web_processes()}


def measured_wrk(
    stack: Stack,
    scenario: str,
    script: str,
    clients: int,
    seconds: float,
    data: str,
    *,
    expected: Iterable[int] = range(200, 300),
    once: bool = False,
    env: dict[str, str] | None = None,
    ops_by_script: bool = False,
) -> Measured:
    """A wrk run as a scenario's figures: the answers in `expected` (or the operations the
    script counted) per second over wrk's duration (over the time from the first request to the
    last answer, for a run that used up its data), wrk's own latency percentiles (or the
    script's per-operation ones), answers outside `expected` as errors."""
    allowed = {str(s) for s in expected}
    env = {"BENCH_EXPECTED": ",".join(sorted(allowed)), **(env or {})}
    result, own, server, _ = wrk(stack, script, clients, seconds, data, once=once, env=env)
    statuses = {k: int(v) for k, v in result["statuses"].items()}
    socket_errors = sum(int(v) for k, v in result["errors"].items() if k != "status")
    errors = sum(n for status, n in statuses.items() if status not in allowed) + socket_errors
    duration = (result["active_us"] if result["exhausted"] else result["duration_us"]) / 1e6
    latency = result.get("op_latency_us") or result["latency_us"]
    measured = Measured(
        scenario=scenario,
        web_workers=stack.web_workers,
        clients=clients,
        ops=int(result["ops"]) if ops_by_script else sum(n for s, n in statuses.items() if s in allowed),
        seconds=duration,
        p50_ms=latency["p50"] / 1000,
        p95_ms=latency["p95"] / 1000,
        p99_ms=latency["p99"] / 1000,
        statuses=statuses,
        errors=errors,
        loadgen_cores=own,
        server_cores=server,
        exhausted=bool(result["exhausted"]),
        extra={"wrk": {k: result[k] for k in ("requests", "duration_us", "active_us", "errors")}},
    )
    measured.note_imbalance()
    if socket_errors:
        measured.notes.append(f"socket errors and timeouts: {result['errors']}")
    samples = result.get("samples") or []  # an empty Lua table comes as {}
    for sample in list(samples.values() if isinstance(samples, dict) else samples):
        measured.notes.append(f"unexpected answer: {sample}")
    return measured


def driver(stack: Stack, args: list[str]) -> tuple[dict[str, Any], float, dict[str, float], float]:
    """The asyncio driver (python -m tests.bench.driver ARGS), its own process: (its JSON line,
    its own CPU as cores, the server side's cores, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="driver-", dir=stack.tmp) as scratch:
        out = Path(scratch) / "out.txt"
        with CpuMeter(server_groups(stack)) as server, out.open("wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.driver", *args],
                cwd=ROOT,
                env=stack.env(),
                stdout=stdout,
                stderr=subprocess.STDOUT,
            )
            own = wait_measured(process)
        text = out.read_text()
    found = [line[len(MARK) :] for line in text.splitlines() if line.startswith(MARK)]
    if process.returncode != 0 or not found:
        raise SystemExit(f"the driver failed ({process.returncode}):\n{text[-3000:]}")
    return json.loads(found[-1]), own / server.wall, server.cores, server.wall
