"""The scenarios of `medpay bench`: each seeds what it needs (not timed), writes its requests out,
drives them from a load generator of its own (wrk, or the asyncio driver), checks what the system
did, and returns its figures."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from miniprogram_stub.api import models as m
from tests.bench import arrange, load
from tests.bench.arrange import Bill, World
from tests.bench.credit import CALLBACK_URL, signed
from tests.bench.load import Measured, lines, request_line
from tests.bench.stack import CpuMeter, Stack, free_port

JSON = "application/json"


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


@dataclass
class Bench:
    """One run's shared state: the system, what is seeded, the figures so far."""

    stack: Stack
    world: World
    clients: int
    seconds: float
    results: list[Measured] = field(default_factory=list)
    seeding: dict[str, float] = field(default_factory=dict)  # seconds spent seeding, by scenario
    create_rate: float = 0.0  # bills created per second while seeding (a first guess at pay's rate)
    callbacks_max: int = 1000  # drawdowns made for the callbacks (each a payment by credit)

    def rate(self, scenario: str) -> float:
        """The best rate measured so far for `scenario`, 0 if none."""
        return max((r.rate for r in self.results if r.scenario == scenario), default=0.0)

    async def seeded(self, scenario: str, work: Awaitable[Any]) -> Any:
        began = time.perf_counter()
        made = await work
        self.seeding[scenario] = self.seeding.get(scenario, 0.0) + time.perf_counter() - began
        return made


def bearer(token: str) -> str:
    return f"Bearer {token}"


def needed(rate: float, seconds: float, clients: int) -> int:
    """Items enough for `seconds` at `rate` with a margin, and a few per client."""
    return math.ceil(rate * seconds * 1.3) + 4 * clients


async def wrk(bench: Bench, *args: Any, **kwargs: Any) -> Measured:
    return await asyncio.to_thread(load.measured_wrk, bench.stack, *args, **kwargs)


def show(measured: Measured) -> None:
    latency = (
        f"p50 {measured.p50_ms:7.1f} ms  p95 {measured.p95_ms:7.1f} ms  p99 {measured.p99_ms:7.1f} ms"
        if measured.p50_ms is not None and measured.p95_ms is not None and measured.p99_ms is not None
        else "latency n/a"
    )
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in measured.server_cores.items() if v >= 0.005)
    say(
        f"  {measured.scenario:<18} web {measured.web_workers}  {measured.clients:>3} clients  "
        f"{measured.rate:8.1f}/s  {latency}  errors {measured.errors}  ({measured.ops} in "
        f"{measured.seconds:.1f} s; load-gen CPU {measured.loadgen_cores:.2f} cores; server {cpu})"
    )
    for note in measured.notes:
        say(f"    {note}")


# -- ceilings and the core scenarios ---------------------------------------------------------------


async def health(bench: Bench, clients: int, seconds: float) -> Measured:
    """The framework's ceiling: GET /health/live (a constant JSON answer, no database)."""
    data = lines([request_line("GET", "/health/live")] * 64)
    return await wrk(bench, "health_live", "requests.lua", clients, seconds, data)


async def presettle(bench: Bench, clients: int, seconds: float) -> Measured:
    """POST /bills/{id}/presettle on unpaid bills, round and round (nothing is written)."""
    w = bench.world
    count = max(2 * clients, min(512, len(w.patients["employee"])))
    bills = await bench.seeded("presettle", arrange.ensure_bills(w, "presettle", "employee", count))
    data = lines(
        request_line(
            "POST",
            f"/api/v1/bills/{b.id}/presettle",
            "{}",
            Authorization=bearer(b.patient.token),
            Content_Type=JSON,
        )
        for b in arrange.interleaved(bills)
    )
    return await wrk(bench, "presettle", "requests.lua", clients, seconds, data, expected=[200])


async def pay(bench: Bench, clients: int, seconds: float) -> Measured:
    """POST /bills/{id}/pay by personal account (the fund's part and the personal account's, no
    cash part): each bill once; bills enough for the run are made first, from the best guess of
    the rate (a run that still used them all up is made again with enough)."""
    guess = bench.rate("pay") or 1.5 * bench.create_rate or 200.0
    measured = await pay_once(bench, clients, seconds, needed(guess, seconds, clients))
    if measured.exhausted and measured.seconds < 0.8 * seconds:
        say(f"    (bills used up after {measured.seconds:.1f} s: again, with more)")
        measured = await pay_once(bench, clients, seconds, needed(measured.rate * 1.5, seconds, clients))
    return measured


async def pay_once(bench: Bench, clients: int, seconds: float, count: int) -> Measured:
    w = bench.world
    bills = await bench.seeded("pay", arrange.ensure_bills(w, "pay", "employee", count))
    body = '{"use_personal_account":true}'
    measured = await wrk(bench, "pay", "requests.lua", clients, seconds, pay_lines(bills, body), once=True)
    await reclaim(bench, bills)
    return measured


def pay_lines(bills: list[Bill], body: str) -> str:
    """Each bill's pay request, under an Idempotency-Key of its own (kept on the bill); the bills
    are used, until `reclaim` finds which the run never sent."""
    ordered = arrange.interleaved(bills)
    for bill in ordered:
        bill.used, bill.key = True, uuid.uuid4().hex
    return lines(
        request_line(
            "POST",
            f"/api/v1/bills/{b.id}/pay",
            body,
            Authorization=bearer(b.patient.token),
            Content_Type=JSON,
            Idempotency_Key=b.key,
        )
        for b in ordered
    )


async def reclaim(bench: Bench, bills: list[Bill]) -> None:
    """The bills a run had no time to pay are unused again: still CREATED, and their key never
    claimed (a request that reached the server claims it first). A moment's wait lets the last
    requests sent arrive."""
    await asyncio.sleep(1.0)
    connection = await asyncpg.connect(bench.stack.database_url)
    try:
        claimed = {
            r["key"]
            for r in await connection.fetch(
                "SELECT key FROM idempotency_key WHERE key = ANY($1::text[])", [b.key for b in bills]
            )
        }
        created = {
            str(r["id"])
            for r in await connection.fetch(
                "SELECT id FROM bill WHERE id = ANY($1::uuid[]) AND state = 'CREATED'", [b.id for b in bills]
            )
        }
    finally:
        await connection.close()
    for bill in bills:
        if bill.id in created and bill.key not in claimed:
            bill.used, bill.key = False, None


async def qr(bench: Bench, clients: int, seconds: float) -> Measured:
    """A patient's GET of a QR code and a terminal's decode of it: one op is the pair."""
    w = bench.world
    # A newer code voids an older one of the same patient: enough patients that a thread never
    # comes back to one whose code is still waiting to be decoded.
    await bench.seeded("qr", arrange.ensure_patients(w, "employee", 8 * clients))
    patients = w.everyone()
    data = lines([p.token] for p in patients)
    env = {"BENCH_TERMINAL_TOKEN": w.terminal_token}
    measured = await wrk(
        bench, "qr", "qr.lua", clients, seconds, data, expected=[200], env=env, ops_by_script=True
    )
    measured.notes.append(f"{len(patients)} patients; latency from the code's request to its decode's answer")
    return measured


# -- pay with WeChat Pay, through to the notification applied -----------------------------------


async def pay_wechat(bench: Bench, clients: int, seconds: float) -> Measured:
    """The asyncio driver: pay (cash by WeChat Pay) -> the payer confirms in the sandbox -> the
    sandbox posts the signed notification -> an arq worker applies it -> PAID."""
    w = bench.world
    guess = bench.rate("pay_wechat") or 0.5 * (bench.rate("pay") or bench.create_rate or 100.0)
    await bench.seeded("pay_wechat", arrange.ensure_patients(w, "resident", max(64, 2 * clients)))
    bills = await bench.seeded(
        "pay_wechat", arrange.ensure_bills(w, "pay_wechat", "resident", needed(guess, seconds, clients))
    )
    ordered = arrange.interleaved(bills)
    for bill in ordered:
        bill.used = True
    path = bench.stack.tmp / f"wechat-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("".join(json.dumps({"bill": b.id, "token": b.patient.token}) + "\n" for b in ordered))
    st = bench.stack
    args = ["wechat", "--data", str(path), "--clients", str(clients), "--seconds", str(seconds)]
    args += ["--api", st.api, "--sandbox", st.sandbox, "--database", st.database_url]
    result, own, server, _ = await asyncio.to_thread(load.driver, st, args)
    latency = result["latency_s"] or {}
    measured = Measured(
        scenario="pay_wechat",
        web_workers=st.web_workers,
        clients=clients,
        ops=result["ops"],
        seconds=result["seconds"],
        p50_ms=latency["p50"] * 1000 if latency else None,
        p95_ms=latency["p95"] * 1000 if latency else None,
        p99_ms=latency["p99"] * 1000 if latency else None,
        statuses={},
        errors=sum(result["errors"].values()),
        loadgen_cores=own,
        server_cores=server,
        exhausted=result["exhausted"],
        extra={"pay_request_s": result["pay_request_s"], "errors": result["errors"]},
    )
    measured.notes.append("bills PAID per second; latency from the pay request to the bill PAID")
    measured.note_imbalance()
    if (request := result["pay_request_s"]) is not None:
        measured.notes.append(
            f"the pay request alone: p50 {request['p50'] * 1000:.1f} ms, p99 {request['p99'] * 1000:.1f} ms"
        )
    if result["errors"]:
        measured.notes.append(f"errors: {result['errors']}")
    return measured


# -- booking on one hot session -------------------------------------------------------------------


async def booking_hot(bench: Bench, clients: int, seconds: float) -> Measured:
    """Every patient seeded, each once, POST /appointments for one session with fewer places
    than patients: 201 HELD until it is full, then 409 SESSION_FULL; never overbooked."""
    w = bench.world
    patients = w.everyone()
    capacity = max(1, min(100, len(patients) // 4))
    session_id = await arrange.hot_session(w, capacity, f"BENCH-HOT-{uuid.uuid4().hex[:8]}")
    body = json.dumps({"session_id": session_id}, separators=(",", ":"))
    data = lines(
        request_line(
            "POST",
            "/api/v1/appointments",
            body,
            Authorization=bearer(p.token),
            Content_Type=JSON,
            Idempotency_Key=uuid.uuid4().hex,
        )
        for p in patients
    )
    measured = await wrk(
        bench, "booking_hot", "requests.lua", clients, seconds, data, expected=[201, 409], once=True
    )
    booked, held = await places(bench.stack.database_url, session_id)
    answered_held = measured.statuses.get("201", 0)
    line = (
        f"{len(patients)} patients for {capacity} places: {answered_held} HELD (201), "
        f"{measured.statuses.get('409', 0)} refused (409); the session counts {booked} booked, "
        f"{held} appointments HELD"
    )
    if not booked == held == answered_held == capacity:
        raise SystemExit(f"booking on the hot session went wrong: {line}")
    measured.notes.append(line + ": no overbooking")
    measured.extra.update(capacity=capacity, attempts=len(patients), booked=booked)
    return measured


async def places(database_url: str, session_id: int) -> tuple[int, int]:
    connection = await asyncpg.connect(database_url)
    try:
        booked = await connection.fetchval("SELECT booked FROM booking_session WHERE id = $1", session_id)
        held = await connection.fetchval(
            "SELECT count(*) FROM appointment WHERE session_id = $1 AND state = 'HELD'", session_id
        )
    finally:
        await connection.close()
    return int(booked), int(held)


# -- credit: drawdowns, and the bank's callbacks ----------------------------------------------------

CREDIT_BODY = '{"use_personal_account":false,"cash_method":"credit"}'
PAID_AMONG = "SELECT count(*) FROM bill WHERE id = ANY($1::uuid[]) AND state = 'PAID'"


async def drawdown(bench: Bench, clients: int, seconds: float) -> Measured:
    """POST /bills/{id}/pay by credit line, the sandbox bank reachable: each request reserves
    the drawdown on the line and asks the bank to disburse (answered PAYING / DISBURSING). The
    bank's `drawdown.disbursed` callbacks are then applied by the workers: waited for, not timed."""
    w = bench.world
    guess = bench.rate("drawdown") or 0.7 * (bench.rate("pay") or bench.create_rate or 100.0)
    bills = await bench.seeded(
        "drawdown", arrange.ensure_bills(w, "drawdown", "credit", needed(guess, seconds, clients))
    )
    measured = await wrk(
        bench, "drawdown", "requests.lua", clients, seconds, pay_lines(bills, CREDIT_BODY), once=True
    )
    await reclaim(bench, bills)
    sent = [b.id for b in bills if b.used]
    paid_by = await arrange.until(
        bench.stack.database_url, PAID_AMONG, [sent], measured.ops, "bills PAID by credit", 120
    )
    measured.notes.append(
        f"the bank's disbursements then applied: every bill PAID {paid_by:.1f} s after the run"
    )
    return measured


async def callbacks(bench: Bench, clients: int, seconds: float) -> list[Measured]:
    """As tests/bench/credit.py part 1: bills paid by credit with the bank unreachable, each left
    PAYING with its drawdown RESERVED; then one distinct signed `drawdown.disbursed` per drawdown
    (Standard Webhooks v1a, the sandbox bank's key), signed beforehand, POSTed once each: accepted
    (204: verified, stored in the inbox, enqueued). Then the arq workers apply them: applied/s,
    from the first applied to the last."""
    w, st = bench.world, bench.stack
    guess = bench.rate("callbacks") or 2 * (bench.rate("pay") or bench.create_rate or 100.0)
    # Each drawdown is a payment made beforehand; past the cap a run uses them all up early, and
    # its rate is over the time it took.
    count = min(bench.callbacks_max, needed(guess, seconds, clients))
    bills = await bench.seeded("callbacks", arrange.ensure_bills(w, "callbacks", "credit", count))
    bills = arrange.interleaved(bills)[:count]
    connection = await asyncpg.connect(st.database_url)
    try:
        api_base = await connection.fetchval("SELECT api_base FROM bank WHERE code = 'demo-bank'")
        away = f"http://127.0.0.1:{free_port()}"
        await connection.execute("UPDATE bank SET api_base = $1 WHERE code = 'demo-bank'", away)
        try:
            await bench.seeded("callbacks", paid_by_credit_while_away(w, bills))
            drawdowns = await reserved(connection, [b.id for b in bills])
            signed_lines = [callback_line(row) for row in drawdowns]
            data = lines(line for line, _ in signed_lines)
            with CpuMeter(load.server_groups(st)) as whole:
                accepted = await wrk(
                    bench, "callbacks", "requests.lua", clients, seconds, data, expected=[204], once=True
                )
                events = [event for _, event in signed_lines]
                applied = await applied_callbacks(bench, connection, events, accepted)
            applied.server_cores = whole.cores
        finally:
            await connection.execute("UPDATE bank SET api_base = $1 WHERE code = 'demo-bank'", api_base)
    finally:
        await connection.close()
    accepted.notes.append(
        f"{len(drawdowns)} drawdowns RESERVED (the bank away), a callback signed for each, "
        f"{accepted.statuses.get('204', 0)} accepted in the run"
    )
    return [accepted, applied]


async def paid_by_credit_while_away(w: World, bills: list[Bill]) -> None:
    async def one(bill: Bill) -> None:
        bill.used = True
        phone = w.api.as_token(bill.patient.token)
        paying = await phone.bills.pay(
            bill.id, m.PayRequest(use_personal_account=False, cash_method="credit")
        )
        assert paying.state == "PAYING", paying

    await arrange.limited(w.concurrency, [lambda b=b: one(b) for b in bills])


async def reserved(connection: asyncpg.Connection, bill_ids: list[str]) -> list[asyncpg.Record]:
    rows = await connection.fetch(
        "SELECT id, amount_fen, status FROM credit_drawdown WHERE bill_id = ANY($1::uuid[])"
        " ORDER BY created_at",
        bill_ids,
    )
    if len(rows) != len(bill_ids) or {r["status"] for r in rows} != {"RESERVED"}:
        states = sorted({r["status"] for r in rows})
        raise SystemExit(f"expected {len(bill_ids)} RESERVED drawdowns, found {len(rows)} in {states}")
    return rows


def callback_line(row: asyncpg.Record) -> tuple[list[str], str]:
    """The drawdown's `drawdown.disbursed` as the bank posts it, and its event id (webhook-id)."""
    body, headers = signed(
        "drawdown.disbursed",
        {
            "drawdown_id": str(row["id"]),
            "amount_fen": row["amount_fen"],
            "disbursement_ref": f"D{uuid.uuid4().hex[:20]}",
            "disbursed_at": datetime.now(UTC).isoformat(),
        },
    )
    named = {name.replace("-", "_"): value for name, value in headers.items()}
    return request_line("POST", CALLBACK_URL, body.decode(), **named), headers["webhook-id"]


async def applied_callbacks(
    bench: Bench, connection: asyncpg.Connection, events: list[str], accepted: Measured
) -> Measured:
    """Wait until none of the run's callbacks in the inbox is left `received` (those still in
    flight at the run's end were stored too; those it had no time to send were not); their rate
    of application, from the first applied to the last."""
    waited = time.perf_counter()
    query = """
        SELECT count(*) AS stored, count(*) FILTER (WHERE state <> 'received') AS applied,
               count(*) FILTER (WHERE outcome = 'paid') AS paid,
               extract(epoch FROM max(applied_at) - min(applied_at)) AS seconds
        FROM inbox_event WHERE event_id = ANY($1::text[])
    """
    answered = accepted.statuses.get("204", 0)
    while True:
        span = await connection.fetchrow(query, events)
        if span["stored"] >= answered and span["applied"] == span["stored"]:
            break
        if time.perf_counter() - waited > 180:
            raise SystemExit(f"callbacks not applied after 180 s: {dict(span)}")
        await asyncio.sleep(0.05)
    count = int(span["stored"])
    if span["paid"] != count:
        raise SystemExit(f"callbacks applied wrongly: {span['paid']} of {count} paid a bill")
    seconds = float(span["seconds"] or 0.0) or 1e-9
    applied = Measured(
        scenario="callbacks_applied",
        web_workers=bench.stack.web_workers,
        clients=len(bench.stack.worker_names()),
        ops=count,
        seconds=seconds,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        statuses={},
        errors=0,
        loadgen_cores=0.0,
        server_cores={},  # the caller's: from the first callback sent to the last applied
        notes=[
            f"by {len(bench.stack.worker_names())} arq worker(s) (clients: workers): each bill PAID, its "
            f"drawdown DISBURSED; {seconds:.1f} s from the first applied to the last, the last "
            f"{time.perf_counter() - waited:.1f} s after the callbacks' run; server CPU from the first sent"
        ],
    )
    return applied


SCENARIOS: dict[str, Callable[[Bench, int, float], Awaitable[Measured | list[Measured]]]] = {
    "pay": pay,
    "presettle": presettle,
    "pay_wechat": pay_wechat,
    "qr": qr,
    "booking_hot": booking_hot,
    "drawdown": drawdown,
    "callbacks": callbacks,
}
CORE = ["presettle", "pay", "qr"]  # run under each --web-workers of a list; the rest under the last
