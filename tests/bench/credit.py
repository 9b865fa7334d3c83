"""Benchmark: banks' callbacks accepted and applied per second, and the reminder run over 100,000
due drawdowns.

    ./run bench credit [--callbacks 1000] [--drawdowns 100000] [--patients 16] [--concurrency 16]
                       [--workers 1 | --in-process]

On throw-away PostgreSQL and Redis (embedded, or DATABASE_URL / REDIS_URL) and the sandbox partners,
with the API served as production serves it (`medpay web`, over HTTP):

1. Patients with credit lines (applied for over the API, approved by a signed `line.approved`)
   pay `--callbacks` bills by credit with the bank unreachable: each bill is left PAYING with a
   RESERVED drawdown for the payment check. Then one distinct signed `drawdown.disbursed` per
   drawdown is posted to `/api/v1/callbacks/banks/demo-bank`, `--concurrency` in flight: accepted/s.
2. `--workers` real arq worker processes (or, `--in-process`, one in-process burst worker polling
   without pause, as tests/bench/pay.py runs one) apply them until no callback is left
   `received`: applied/s; then the audit.
3. `--drawdowns` DISBURSED drawdowns, due at every reminder milestone of today, are inserted in SQL
   (with their people, bound users, lines and ledger debts), and `medpay credit remind` runs as a
   separate process, twice: wall time, reminders/s, peak RSS; then the audit again.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from arq.worker import Worker

from backend.audit import full_audit
from backend.billing.parties import CHINA
from backend.billing.tables import Bill
from backend.credit import lines, reminders
from backend.credit.tables import Bank, CreditLine, CreditProduct, Drawdown
from backend.ledger import service as ledger
from backend.notify.tables import Notification
from backend.partners import webhooks
from backend.piccolo_conf import DB
from backend.platform.logging import configure_logging
from backend.platform.runtime import Runtime
from backend.platform.tables import InboxEvent
from backend.settings import Settings
from tests import servers
from tests.bench import qr
from tests.billing.factories import Insured, cash_item, his_headers, insured_patient, new_bill, pay
from tests.credit.arrange import apply, products
from workers.settings import worker_settings

# The sandbox bank's current signing key; the seeded demo bank holds its public half (seed.py).
BANK_KEY = webhooks.secret_key("whsk_I+6ZQUbKFnYxKlZ/H1JvmwddcZWw3q5/dssHdLwOQ6w=")
CALLBACK_URL = "/api/v1/callbacks/banks/demo-bank"
BILL_FEN = 2560  # each bill: one self-pay item, all of it drawn on the line
DRAWDOWNS_PER_PERSON = 25  # part 3: about this many due drawdowns per person
DAYS = list(reminders.MILESTONES)  # days until due: 7, 3, 1, 0, then overdue 1, 7, 30
BENCH = "bench:reminders"  # marks part 3's ledger journals


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def report(what: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    say(
        f"{what}: {len(ms) / elapsed:8.1f}/s   p50 {statistics.median(ms):6.1f} ms   "
        f"p95 {ms[int(len(ms) * 0.95)]:6.1f} ms   ({len(ms)} in {elapsed:.1f} s)"
    )


def signed(event_type: str, data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A bank callback as the bank sends it: compact JSON, Standard Webhooks v1a headers."""
    body = msgspec.json.encode(
        {"type": event_type, "occurred_at": datetime.now(UTC).isoformat(), "data": data}
    )
    return body, {**webhooks.sign_headers([BANK_KEY], body), "Content-Type": "application/json"}


async def post_signed(api: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> None:
    answer = await api.post(CALLBACK_URL, content=body, headers=headers)
    assert answer.status_code == 204, answer.text


async def drain(settings: Settings, runtime: Runtime) -> None:
    """An in-process burst worker runs what is due (the lines' approvals); later jobs stay queued."""
    worker = Worker(
        **{
            **worker_settings(settings),
            "ctx": {"settings": settings, "runtime": runtime},
            "on_startup": None,
            "on_shutdown": None,
            "cron_jobs": [],
            "burst": True,
            "poll_delay": 0,
            "handle_signals": False,
            "max_burst_jobs": -1,
        }
    )
    await worker.main()
    await worker.close()


# -- part 1: lines, bills paid by credit with the bank away, callbacks accepted --------------------


async def credit_patients(
    api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    settings: Settings,
    runtime: Runtime,
    count: int,
    limit_fen: int,
) -> list[Insured]:
    """Patients with an ACTIVE line of `limit_fen`: applied for over the API (the application
    stays with us, the bank being away), approved by our own signed `line.approved`."""
    patients = [await insured_patient(api, sandbox, settings) for _ in range(count)]
    product = (await products(api, patients[0]))[0]
    if limit_fen > product["limit_fen"]:
        await CreditProduct.update({CreditProduct.limit_fen: limit_fen}).where(
            CreditProduct.id == product["id"]
        )
        say(
            f"  the product's limit raised in SQL from {product['limit_fen']} to {limit_fen} fen, "
            "so that each line holds its share of the bills"
        )
    expires = (lines.china_today() + timedelta(days=365)).isoformat()
    for patient in patients:
        applied = await apply(api, patient, product)
        assert applied.status_code == 202, applied.text
        line = applied.json()
        assert line["status"] == "APPLIED", line
        data = {
            "application_id": line["id"],
            "line_ref": f"L{uuid.uuid4().hex[:16]}",
            "limit_fen": limit_fen,
            "expires_on": expires,
        }
        await post_signed(api, *signed("line.approved", data))
    await drain(settings, runtime)
    active = await CreditLine.count().where(CreditLine.status == "ACTIVE")
    assert active == count, f"{active} of {count} lines approved"
    return patients


async def pay_bills(
    api: httpx.AsyncClient, his: dict[str, str], patients: list[Insured], bills: int, concurrency: int
) -> None:
    """`bills` bills created and paid by credit, `concurrency` at once: bill i is patient
    i % len(patients)'s (so each line holds its share), paid in loop i % concurrency."""

    async def loop(worker: int) -> None:
        for i in range(worker, bills, concurrency):
            patient = patients[i % len(patients)]
            bill = await new_bill(api, his, patient, cash_item(BILL_FEN))
            answer = await pay(api, patient, bill["id"], use_personal_account=False, cash_method="credit")
            assert answer.status_code == 200, answer.text
            paying = answer.json()
            assert (paying["state"], paying["launch"]["status"]) == ("PAYING", "DISBURSING"), paying

    await asyncio.gather(*(loop(w) for w in range(concurrency)))


async def reserved_drawdowns(expected: int) -> list[dict[str, Any]]:
    """Every drawdown RESERVED, its bill PAYING by credit, its cash part CREATED: what a payment
    leaves when the bank could not be asked."""
    rows: list[dict[str, Any]] = await Drawdown.raw(
        """
        SELECT d.id, d.amount_fen, d.status, b.state AS bill_state, b.cash_method, c.state AS cash_state
        FROM credit_drawdown d JOIN bill b ON b.id = d.bill_id
        JOIN cash_payment c ON c.out_trade_no = d.out_trade_no
        ORDER BY d.created_at
        """
    )
    states = {(r["status"], r["bill_state"], r["cash_method"], r["cash_state"]) for r in rows}
    assert len(rows) == expected and states == {("RESERVED", "PAYING", "credit", "CREATED")}, (
        len(rows),
        states,
    )
    return rows


async def post_callbacks(
    api: httpx.AsyncClient, drawdowns: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], float]:
    """One signed `drawdown.disbursed` per drawdown (signed beforehand), `concurrency` in flight."""
    now = datetime.now(UTC).isoformat()
    prepared = deque(
        signed(
            "drawdown.disbursed",
            {
                "drawdown_id": str(row["id"]),
                "amount_fen": row["amount_fen"],
                "disbursement_ref": f"D{uuid.uuid4().hex[:20]}",
                "disbursed_at": now,
            },
        )
        for row in drawdowns
    )
    latencies: list[float] = []

    async def loop() -> None:
        while prepared:
            body, headers = prepared.popleft()
            started = time.perf_counter()
            await post_signed(api, body, headers)
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


# -- part 2: the callbacks applied by real worker processes ---------------------------------------


async def received() -> int:
    return int(await InboxEvent.count().where(InboxEvent.state == "received"))


async def until_applied(began: float, alive: Callable[[], bool]) -> float:
    """Wait until no callback is left `received`; the seconds since `began`."""
    while await received():
        if not alive():
            raise SystemExit(f"the worker stopped with {await received()} callbacks still received")
        if time.perf_counter() - began > 900:
            raise SystemExit(f"{await received()} callbacks still received after 900 s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - began


async def in_worker_processes(settings: Settings, workers: int) -> float:
    """Real `arq workers.main.WorkerSettings` processes, as production runs them."""
    began = time.perf_counter()
    processes = [servers.arq_worker(settings) for _ in range(workers)]
    try:
        return await until_applied(began, lambda: all(p.poll() is None for p in processes))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(120)


async def in_process(settings: Settings, runtime: Runtime) -> float:
    """An in-process burst worker that polls without pause (`poll_delay=0`), as tests/conftest.py
    `run_worker` and tests/bench/pay.py run one; jobs deferred past the run are set aside."""
    worker = Worker(
        **{
            **worker_settings(settings),
            "ctx": {"settings": settings, "runtime": runtime},
            "on_startup": None,
            "on_shutdown": None,
            "cron_jobs": [],
            "burst": True,
            "poll_delay": 0,
            "handle_signals": False,
            "max_burst_jobs": -1,
        }
    )
    later = await runtime.redis.zrangebyscore(
        worker.queue_name, time.time() * 1000 + 60_000, "+inf", withscores=True
    )
    if later:
        await runtime.redis.zrem(worker.queue_name, *(job for job, _ in later))
    began = time.perf_counter()
    running_worker = asyncio.create_task(worker.main())
    try:
        elapsed = await until_applied(began, lambda: not running_worker.done())
        await running_worker  # and the holders' notifications it queued
    finally:
        running_worker.cancel()
        await worker.close()
        if later:
            await runtime.redis.zadd(worker.queue_name, dict(later))
    return elapsed


async def apply_callbacks(settings: Settings, runtime: Runtime, args: argparse.Namespace) -> None:
    expected = args.callbacks
    if args.in_process:
        who = "one in-process burst worker (poll_delay 0)"
        elapsed = await in_process(settings, runtime)
    else:
        who = f"{args.workers} worker process{'es' if args.workers > 1 else ''}"
        elapsed = await in_worker_processes(settings, args.workers)
    span = await InboxEvent.raw(
        """
        SELECT extract(epoch FROM max(applied_at) - min(applied_at)) AS seconds
        FROM inbox_event WHERE kind = 'drawdown.disbursed'
        """
    )
    seconds = float(span[0]["seconds"] or 0.0) or elapsed
    outcomes = {
        (row["state"], row["outcome"]): row["n"]
        for row in await InboxEvent.raw(
            "SELECT state, outcome, count(*) AS n FROM inbox_event "
            "WHERE kind = 'drawdown.disbursed' GROUP BY 1, 2"
        )
    }
    paid = await Bill.count().where(Bill.state == "PAID")
    disbursed = await Drawdown.count().where(Drawdown.status == "DISBURSED")
    if outcomes != {("applied", "paid"): expected} or paid != expected or disbursed != expected:
        raise SystemExit(
            f"callbacks applied wrongly: outcomes {outcomes}, {paid} bills PAID, "
            f"{disbursed} drawdowns DISBURSED, of {expected}"
        )
    say(
        f"callbacks applied by {who}: "
        f"{expected / seconds:8.1f}/s   ({expected} bills PAID, drawdowns DISBURSED, debts posted, "
        f"holders notified: {seconds:.1f} s from the first applied to the last, "
        f"{elapsed:.1f} s from starting {'it' if args.in_process else 'the worker'})"
    )


async def audited(after: str, billless: set[str] | None = None) -> None:
    """`medpay audit`'s checks, failing loudly on any problem, except (part 3) the one expected of
    each drawdown in `billless`: made in SQL without a bill's cash part of its own."""
    began = time.perf_counter()
    problems, counts = await full_audit()
    audit_s = time.perf_counter() - began
    excused = {
        p for p in problems if billless and "its cash part is None" in p and p.split(" ", 2)[1] in billless
    }
    problems = [p for p in problems if p not in excused]
    if problems or len(excused) != len(billless or ()):
        shown = "\n  ".join(problems[:20])
        raise SystemExit(
            f"audit after {after}: {len(problems)} problems ({len(excused)} drawdowns without a cash "
            f"part):\n  {shown}"
        )
    but = (
        f" but for the {len(excused)} drawdowns made in SQL, each without a cash part of a bill "
        "(which the reminder run never reads)"
        if excused
        else ""
    )
    say(f"audit after {after}: clean{but}, in {audit_s:.1f} s: {counts}")


# -- part 3: the reminder run over many due drawdowns ----------------------------------------------


async def insert_due_drawdowns(settings: Settings, count: int, as_of: date) -> tuple[int, int]:
    """`count` DISBURSED drawdowns due at the milestones of `as_of`, each person's spread over
    every milestone: people, users bound to them, ACTIVE lines using what their drawdowns owe,
    and each drawdown's debt journal as `drawdowns.disbursed` posts it. Returns (people, lines)."""
    people = max(1, count // DRAWDOWNS_PER_PERSON)
    product = await CreditProduct.select().first()
    bank = await Bank.select(Bank.id, Bank.code).where(Bank.code == "demo-bank").first()
    assert product is not None and bank is not None
    digest = hashlib.sha256(product["terms_text"].encode()).hexdigest()
    sql = Drawdown.raw
    async with DB.transaction():
        await sql(
            """
            INSERT INTO app_user (channel, app_id, openid, created_at, last_login_at)
            SELECT 'wechat', {}, 'bench-' || n, now(), now() FROM generate_series(1, {}) n
            """,
            settings.wechat.appid,
            people,
        )
        await sql(
            """
            INSERT INTO insured_person (id_digest, id_type, id_number_enc, name_enc, id_number_masked,
                                        name_masked, cert_no, region_code, insurance_type,
                                        opening_balance_fen, created_at, updated_at)
            SELECT md5('bench-person-' || n) || md5('bench-' || n), 'resident_id', 'bench', 'bench',
                   '330106**********' || lpad((n % 100)::text, 2, '0'), '测*', 'BENCH' || n, '330106',
                   'employee', 0, now(), now()
            FROM generate_series(1, {}) n
            """,
            people,
        )
        await sql(
            """
            INSERT INTO ecert_binding (user_id, insured_id, channel, bound_at)
            SELECT u.id, i.id, 'wechat', now()
            FROM app_user u JOIN insured_person i ON i.cert_no = 'BENCH' || substr(u.openid, 7)
            WHERE u.openid LIKE 'bench-%'
            """
        )
        await sql(
            """
            INSERT INTO credit_line (id, product_id, bank_id, insured_id, user_id, status, limit_fen,
                                     used_fen, bank_line_ref, expires_on, terms_version, terms_digest,
                                     consented_at, applied_at, decided_at)
            SELECT gen_random_uuid(), {}, {}, b.insured_id, b.user_id, 'ACTIVE', {}, 0,
                   'LBENCH' || b.insured_id, {}::date + 365, {}, {}, now(), now(), now()
            FROM ecert_binding b JOIN insured_person i ON i.id = b.insured_id
            WHERE i.cert_no LIKE 'BENCH%'
            """,
            product["id"],
            bank["id"],
            product["limit_fen"],
            as_of,
            product["terms_version"],
            digest,
        )
        # Each bench drawdown names one of part 1's bills: the reminder run reads drawdowns, their
        # lines and the users bound to their people, never bills.
        await sql(
            """
            WITH l AS (
                SELECT id, row_number() OVER (ORDER BY id) - 1 AS k
                FROM credit_line WHERE bank_line_ref LIKE 'LBENCH%'
            ),
            bills AS (SELECT array_agg(id ORDER BY id) AS ids, count(*) AS n FROM bill),
            g AS (
                SELECT g, g % {} AS k, ({}::int[])[1 + (g / {}) % 7] AS days, 1000 + (g % 37) * 100 AS fen
                FROM generate_series(0, {} - 1) g
            )
            INSERT INTO credit_drawdown (id, line_id, bill_id, out_trade_no, amount_fen, status,
                                         disbursement_ref, disbursed_at, due_date, principal_fen,
                                         interest_fen, repaid_fen, refunded_fen, repaying_fen, created_at)
            SELECT gen_random_uuid(), l.id, bills.ids[1 + g.g % bills.n], 'BENCH' || lpad(g.g::text, 12, '0'),
                   g.fen, 'DISBURSED', 'DBENCH' || g.g,
                   ({}::date + g.days - 49)::timestamp AT TIME ZONE 'Asia/Shanghai',
                   {}::date + g.days, g.fen, 0, 0, 0, 0, now()
            FROM g JOIN l ON l.k = g.k CROSS JOIN bills
            """,
            people,
            DAYS,
            people,
            count,
            as_of,
            as_of,
        )
        await sql(
            """
            UPDATE credit_line SET used_fen = s.fen
            FROM (SELECT line_id, sum(principal_fen) AS fen FROM credit_drawdown
                  WHERE out_trade_no LIKE 'BENCH%' GROUP BY line_id) s
            WHERE credit_line.id = s.line_id
            """
        )
        # The debts, as `lines.post_debt` posts them: a journal per drawdown, the line's
        # credit_debt account down and the bank's bank_lent account up.
        lent = ledger.bank_lent(bank["code"])
        await sql(
            """
            INSERT INTO ledger_account (code, kind, balance_fen, created_at)
            SELECT 'credit_debt:' || id, 'credit_debt', 0, now()
            FROM credit_line WHERE bank_line_ref LIKE 'LBENCH%'
            UNION ALL SELECT {}, 'bank_lent', 0, now()
            ON CONFLICT (code) DO NOTHING
            """,
            lent,
        )
        await sql(
            """
            INSERT INTO ledger_journal (kind, reference, correlation_id, created_at)
            SELECT 'credit.drawn', 'drawdown:' || id, {}, now()
            FROM credit_drawdown WHERE out_trade_no LIKE 'BENCH%'
            """,
            BENCH,
        )
        await sql(
            """
            WITH d AS (
                SELECT j.id AS journal_id, d.line_id, d.principal_fen
                FROM credit_drawdown d
                JOIN ledger_journal j ON j.kind = 'credit.drawn' AND j.reference = 'drawdown:' || d.id
                WHERE d.out_trade_no LIKE 'BENCH%'
            )
            INSERT INTO ledger_entry (journal_id, account_id, amount_fen)
            SELECT d.journal_id, a.id, -d.principal_fen
            FROM d JOIN ledger_account a ON a.code = 'credit_debt:' || d.line_id
            UNION ALL
            SELECT d.journal_id, (SELECT id FROM ledger_account WHERE code = {}), d.principal_fen FROM d
            """,
            lent,
        )
        await sql(
            """
            UPDATE ledger_account SET balance_fen = balance_fen + s.total
            FROM (SELECT e.account_id, sum(e.amount_fen) AS total
                  FROM ledger_entry e JOIN ledger_journal j ON j.id = e.journal_id
                  WHERE j.correlation_id = {} GROUP BY e.account_id) s
            WHERE ledger_account.id = s.account_id
            """,
            BENCH,
        )
    made = await Drawdown.count().where(Drawdown.out_trade_no.like("BENCH%"))
    assert made == count, f"{made} drawdowns inserted of {count}"
    return people, int(await CreditLine.count().where(CreditLine.bank_line_ref.like("LBENCH%")))


def remind(settings: Settings, as_of: date, log: Path) -> tuple[str, float, float]:
    """`medpay credit remind --as-of` as an operator runs it: (its output, wall s, peak RSS MiB)."""
    env = {
        **os.environ,
        "MEDPAY_ENV": "test",
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": settings.redis.url,
        "MEDPAY_LOG_LEVEL": "WARNING",
    }
    out = log.with_suffix(".out")
    with out.open("wb") as stdout, log.open("wb") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "credit", "remind", "--as-of", as_of.isoformat()],
            cwd=servers.ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        # wait4: this child's own usage, not the other children's (the web and worker processes).
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    if process.returncode != 0:
        raise SystemExit(f"medpay credit remind failed ({process.returncode}):\n{text}\n{log.read_text()}")
    # Its summary is the last line (the command leaves structlog unconfigured: its INFO lines
    # go to stdout too).
    return text.strip().splitlines()[-1], elapsed, usage.ru_maxrss / 1024  # KiB on Linux


async def reminder_run(settings: Settings, count: int, tmp: Path) -> None:
    as_of = datetime.now(UTC).astimezone(CHINA).date()
    began = time.perf_counter()
    people, made_lines = await insert_due_drawdowns(settings, count, as_of)
    say(
        f"  {count} DISBURSED drawdowns due at the 7 milestones of {as_of} inserted in SQL in "
        f"{time.perf_counter() - began:.1f} s: {people} people with a bound user, {made_lines} lines, "
        "a debt journal per drawdown (each names one of part 1's bills, with no cash part of its own)"
    )
    # Reminders are recorded per (user, template, subject, milestone): what was there before is
    # part 1's credit_paid messages.
    before = await Notification.count()
    first, wall, rss = await asyncio.to_thread(remind, settings, as_of, tmp / "remind-1.log")
    sent = await Notification.count() - before
    say(f"  medpay credit remind --as-of {as_of}: {first}")
    say(
        f"reminder run: {count} drawdowns, {sent} reminders recorded and enqueued in {wall:.1f} s: "
        f"{sent / wall:8.1f} reminders/s, peak RSS {rss:.0f} MiB"
    )
    expected = f"{count} drawdowns due at a milestone, {count} reminders sent"
    if expected not in first or sent != count:
        raise SystemExit(f"the first run should send {count} reminders, one per drawdown: {first}")
    again, wall_again, rss_again = await asyncio.to_thread(remind, settings, as_of, tmp / "remind-2.log")
    say(f"  medpay credit remind --as-of {as_of}, again: {again}")
    if f"{count} drawdowns due at a milestone, 0 reminders sent" not in again:
        raise SystemExit(f"the second run sent reminders again: {again}")
    say(
        f"reminder run repeated: 0 sent (each milestone once) in {wall_again:.1f} s, "
        f"peak RSS {rss_again:.0f} MiB"
    )


# -- the whole run -------------------------------------------------------------------------------


async def bench(settings: Settings, args: argparse.Namespace) -> None:
    async with qr.serving(settings) as (runtime, _, sandbox):  # its in-process app goes unused
        # Nothing listens where the demo bank is said to be: a disbursement request fails
        # (PartnerUnavailable) and the bill is left PAYING for the payment check.
        away = f"http://127.0.0.1:{servers.free_port()}"
        await Bank.update({Bank.api_base: away}).where(Bank.code == "demo-bank")
        with (
            tempfile.TemporaryDirectory() as scratch,
            servers.web(settings, Path(scratch) / "web.log") as url,
        ):
            tmp = Path(scratch)
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as api:
                say(
                    f"part 1: the API served by `medpay web` at {url}; the bank away ({away}: "
                    "its disbursement requests fail at once, MEDPAY_PARTNER_RETRIES=0)"
                )
                began = time.perf_counter()
                per_patient = -(-args.callbacks // args.patients)
                patients = await credit_patients(
                    api, sandbox, settings, runtime, args.patients, max(500_000, per_patient * BILL_FEN)
                )
                his = await his_headers(api)
                await pay_bills(api, his, patients, args.callbacks, args.concurrency)
                drawdowns = await reserved_drawdowns(args.callbacks)
                say(
                    f"  {args.patients} patients with a line; {args.callbacks} bills of {BILL_FEN} fen paid "
                    f"by credit over the API in {time.perf_counter() - began:.1f} s: each PAYING, its "
                    "drawdown RESERVED, its cash part CREATED (the bank could not be asked)"
                )
                latencies, elapsed = await post_callbacks(api, drawdowns, args.concurrency)
                report("bank callbacks accepted (204, stored and enqueued)", latencies, elapsed)
            if args.in_process:
                say("part 2: an in-process arq burst worker, polling without pause")
            else:
                # What the worker processes read: they inherit this environment.
                jobs = int(os.environ.get("MEDPAY_WORKER_CONCURRENCY", settings.worker.concurrency))
                poll = float(
                    os.environ.get("MEDPAY_WORKER_POLL_DELAY_SECONDS", settings.worker.poll_delay_seconds)
                )
                say(
                    f"part 2: {args.workers} `arq workers.main.WorkerSettings` process(es), "
                    f"MEDPAY_WORKER_CONCURRENCY={jobs}, polling the queue every {poll} s"
                )
            await apply_callbacks(settings, runtime, args)
            await audited("part 2")
            say("part 3: the reminder run, `medpay credit remind` in its own process")
            await reminder_run(settings, args.drawdowns, tmp)
            bench = await Drawdown.select(Drawdown.id).where(Drawdown.out_trade_no.like("BENCH%"))
            await audited("part 3", {str(row["id"]) for row in bench})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--callbacks", type=int, default=1000, help="bills paid by credit, one callback each")
    parser.add_argument("--drawdowns", type=int, default=100_000, help="due drawdowns for the reminder run")
    parser.add_argument("--patients", type=int, default=16, help="patients with a line, paying the bills")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="arq worker processes applying callbacks")
    # `./run bench` gives options without a benchmark's name to all three: this one runs by count.
    parser.add_argument("--seconds", type=float, default=None, help="ignored: the other benchmarks' option")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="apply them with one in-process burst worker (poll_delay 0) instead of processes",
    )
    args = parser.parse_args()
    if min(args.callbacks, args.drawdowns, args.patients, args.concurrency, args.workers) < 1:
        parser.error("every option must be at least 1")
    configure_logging("WARNING")
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    # The payment checks the bills defer (and the sweeper's catch-up) would only ask the absent
    # bank during the run: the web and worker processes put them an hour off.
    os.environ["MEDPAY_BILL_PAYMENT_CHECK_AFTER_SECONDS"] = "3600"
    # Only the setup asks the bank (to disburse, at each payment): let that fail at once rather
    # than after the two retries' backoff. Receiving callbacks asks no partner.
    os.environ["MEDPAY_PARTNER_RETRIES"] = "0"
    began = time.perf_counter()
    with servers.bench_settings() as settings:
        say(
            f"{os.cpu_count()} cores; --callbacks {args.callbacks} --drawdowns {args.drawdowns} "
            f"--patients {args.patients} --concurrency {args.concurrency} --workers {args.workers}"
            f"{' --in-process' if args.in_process else ''}; "
            "`medpay web` (granian, 1 worker) over HTTP"
        )
        asyncio.run(bench(settings, args))
    say(f"whole run: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
