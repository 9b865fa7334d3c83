"""What `medpay bench` seeds before it measures, all through the HTTP API of the running server
with the typed client (`miniprogram_stub.api`): patients (a sandbox login code, a login, an
e-certificate bound, a visit opened by a terminal decoding their QR code), bills created by the
hospital's system, credit lines applied for and approved by the sandbox bank, a hot session."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import msgspec

from backend.settings import Settings
from miniprogram_stub.api import Medpay
from miniprogram_stub.api import models as m
from tests.bench.pay import ITEMS, REGISTRATION
from tests.billing.factories import cash_item
from tests.booking.arrange import schedule, session
from tests.helpers import login_code
from tests.identities import resident_id

T = TypeVar("T")
HIS = ("demo-his", "demo-his-secret")  # seeded by `medpay seed`: bills:write bookings:write
TERMINAL = ("demo-terminal", "demo-terminal-secret")  # ecert:decode
CREDIT_BILL_FEN = 2560  # one self-pay item, all of it drawn on the line
# Bills a patient may take: an employee's personal account holds at least 100,000 fen (the
# sandbox's rule) and a registration bill asks 500 of it; a line 500,000, a credit bill 2,560.
BILLS_PER_EMPLOYEE = 150
BILLS_PER_LINE = 150


@dataclass
class Patient:
    """A patient's phone: its bearer token, and the e-certificate number the hospital bills."""

    n: int
    token: str
    cert_no: str
    kind: str  # "employee", "resident" or "credit"
    bills: int = 0  # bills made for it so far
    user: str = ""  # who the sandbox platform knows it as (its subscribe dialog's user)


@dataclass
class Bill:
    id: str
    patient: Patient
    used: bool = False  # paid (or sent to be paid) by a scenario
    key: str | None = None  # the Idempotency-Key it was sent under


@dataclass
class World:
    """Everything seeded so far, by kind."""

    api: Medpay
    sandbox: httpx.AsyncClient
    settings: Settings
    database_url: str
    his: Medpay
    terminal: Medpay
    terminal_token: str
    concurrency: int
    patients: dict[str, list[Patient]] = field(
        default_factory=lambda: {"employee": [], "resident": [], "credit": []}
    )
    bills: dict[str, list[Bill]] = field(default_factory=dict)  # by purpose: "pay", "presettle", ...
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def everyone(self) -> list[Patient]:
        return [p for kind in self.patients.values() for p in kind]

    def unused(self, purpose: str) -> list[Bill]:
        return [b for b in self.bills.get(purpose, []) if not b.used]


async def limited(concurrency: int, work: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the thunks `concurrency` at a time, results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(thunk: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await thunk()

    return list(await asyncio.gather(*(one(thunk) for thunk in work)))


async def world(
    api: Medpay, sandbox: httpx.AsyncClient, settings: Settings, database_url: str, concurrency: int
) -> World:
    """The partners' callers (the demo hospital system and terminal) over `api`'s connections."""
    his = await api.as_partner(*HIS)
    terminal_token = (await api.partners.token(*TERMINAL)).access_token
    return World(
        api, sandbox, settings, database_url, his, api.as_token(terminal_token), terminal_token, concurrency
    )


def identity(n: int, employee: bool) -> str:
    """A distinct resident ID for patient n: the sandbox files it under employee insurance when
    the 17th digit is odd (the last of the 3-digit sequence), under resident when even."""
    born = (date(1950, 1, 1) + timedelta(days=n // 500)).strftime("%Y%m%d")
    return resident_id(born=born, sequence=2 * (n % 500) + (1 if employee else 0))


async def new_patient(w: World, kind: str, run: str) -> Patient:
    """Logged in by a sandbox login code, the e-certificate bound, a visit opened at the demo
    hospital (its terminal decodes the patient's QR code), so the hospital may bill the cert_no."""
    n = next(w.numbers)
    user = f"bench-{run}-{n}"
    code = await login_code(w.sandbox, w.settings, "wechat", user)
    tokens = await w.api.auth.login(m.LoginRequest(channel="wechat", code=code))
    phone = w.api.as_token(tokens.access_token)
    bound = await phone.ecert.bind(
        m.BindRequest(name=f"测试压测{n}", id_type="resident_id", id_number=identity(n, kind != "resident"))
    )
    await w.terminal.ecert.decode((await phone.ecert.qrcode()).payload)
    return Patient(n, tokens.access_token, bound.cert_no, kind, user=user)


async def ensure_patients(w: World, kind: str, count: int) -> list[Patient]:
    """At least `count` patients of `kind`; credit patients get an ACTIVE line as well."""
    have = w.patients[kind]
    missing = count - len(have)
    if missing > 0:
        run = uuid.uuid4().hex[:6]
        made = await limited(w.concurrency, [lambda: new_patient(w, kind, run)] * missing)
        if kind == "credit":
            await approved_lines(w, made)
        have.extend(made)
    return have


async def approved_lines(w: World, patients: list[Patient]) -> None:
    """Each applies for the demo bank's product over the API; the sandbox bank approves by its
    signed `line.approved` callback, which an arq worker applies: wait until every line is ACTIVE."""
    phone = w.api.as_token(patients[0].token)
    product = (await phone.credit.products())[0]
    consent = m.CreditConsent(terms_version=product.terms_version, accepted=True)
    body = m.ApplicationCreate(product_id=product.id, consent=consent)
    await limited(w.concurrency, [lambda p=p: w.api.as_token(p.token).credit.apply(body) for p in patients])
    certs = [p.cert_no for p in patients]
    query = """
        SELECT count(*) FROM credit_line l JOIN insured_person i ON i.id = l.insured_id
        WHERE i.cert_no = ANY($1::text[]) AND l.status = 'ACTIVE'
    """
    await until(w.database_url, query, [certs], len(patients), "credit lines ACTIVE", limit_s=120)


async def until(
    database_url: str,
    query: str,
    args: list[Any],
    expected: int,
    what: str,
    limit_s: float = 120,
    explain: str | None = None,
) -> float:
    """Poll a count until it reaches `expected`; the seconds it took. After `limit_s` the run
    fails, with the rows of `explain` (a query of the same arguments) in its message."""
    connection = await asyncpg.connect(database_url)
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        while (found := int(await connection.fetchval(query, *args))) < expected:
            if loop.time() - began > limit_s:
                rows = [dict(r) for r in await connection.fetch(explain, *args)] if explain else []
                raise SystemExit(f"{what}: {found} of {expected} after {limit_s:.0f} s {rows or ''}")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    return loop.time() - began


BILL_ITEMS = {
    "employee": REGISTRATION,  # the personal account pays all of it
    "resident": ITEMS,  # the fund pays part, the rest is cash
    "credit": [msgspec.convert(i, m.ItemIn) for i in cash_item(CREDIT_BILL_FEN)],  # all cash
}
BUDGET = {"employee": BILLS_PER_EMPLOYEE, "resident": 10_000, "credit": BILLS_PER_LINE}


async def ensure_bills(
    w: World, purpose: str, kind: str, count: int, *, per_patient_min: int = 0
) -> list[Bill]:
    """At least `count` unused bills for `purpose`, billed by the demo hospital's system to
    patients of `kind` in turn (consecutive bills are different patients'), each patient within
    what their account or line can pay; more patients are made when those are used up."""
    missing = count - len(w.unused(purpose))
    if missing <= 0:
        return w.unused(purpose)
    patients = w.patients[kind]
    room = sum(max(0, BUDGET[kind] - p.bills) for p in patients)
    if room < missing:
        needed = -(-(missing - room) // BUDGET[kind])
        patients = await ensure_patients(w, kind, len(patients) + needed)
    order = _round_robin(patients, missing, BUDGET[kind])
    body_of = BILL_ITEMS[kind]

    async def bill_for(patient: Patient) -> Bill:
        made = await w.his.bills.create(
            m.BillCreate(order_type="DIAG", cert_no=patient.cert_no, items=body_of)
        )
        return Bill(str(made.id), patient)

    made = await limited(w.concurrency, [lambda p=p: bill_for(p) for p in order])
    w.bills.setdefault(purpose, []).extend(made)
    return w.unused(purpose)


def _round_robin(patients: list[Patient], count: int, budget: int) -> list[Patient]:
    """`count` patients to bill, taking each with room in turn, and counting what each takes."""
    order: list[Patient] = []
    while len(order) < count:
        open_ = [p for p in patients if p.bills < budget]
        if not open_:
            raise SystemExit("no patient left with room for another bill")
        for patient in open_[: count - len(order)]:
            patient.bills += 1
            order.append(patient)
    return order


def interleaved(bills: list[Bill]) -> list[Bill]:
    """The bills ordered so that neighbours are different patients' (they were made in turn; an
    earlier run may have used some)."""
    by_patient: dict[int, list[Bill]] = {}
    for bill in bills:
        by_patient.setdefault(bill.patient.n, []).append(bill)
    queues = list(by_patient.values())
    out: list[Bill] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        out.extend(q[depth] for q in queues if depth < len(q))
    return out


async def hot_session(w: World, capacity: int, code: str) -> int:
    """One session tomorrow with `capacity` places, published by the hospital's system; its id."""
    body = msgspec.convert(schedule([session(capacity=capacity, code=code)]), m.ScheduleUpsert)
    await w.his.booking.publish_schedules(body)
    connection = await asyncpg.connect(w.database_url)
    try:
        found = await connection.fetchval("SELECT id FROM booking_session WHERE code = $1", code)
    finally:
        await connection.close()
    return int(found)
