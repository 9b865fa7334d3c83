"""Benchmark: appointments booked per second, on one hot session and across many, and the
catalogue browsed on a large one (by default 200 hospitals, 10,000 doctors, 1.2 million sessions).

    ./run bench booking [--patients 500] [--hospitals 200] [--doctors 10000] [--days 60]
                        [--seconds 10] [--concurrency 16]

On throw-away PostgreSQL and Redis (embedded, or DATABASE_URL / REDIS_URL) and the sandbox partners,
with the API served as production serves it (`medpay web`, granian, over HTTP; one worker unless
MEDPAY_WEB_WORKERS says otherwise). Each phone is an HTTP client of its own, its connection opened
before it is timed (one client pooling 500 connections costs httpx more CPU than the server spends
answering them).

1. `--patients` patients, logged in and their e-certificates bound over the API (`--concurrency`
   at a time), all POST /api/v1/appointments for one session of 30 places tomorrow at once:
   wall time, requests/s, latency p50/p95/p99. Exactly 30 must be HELD (201) and the rest refused
   409 `SESSION_FULL`, and the session must count 30 booked.
2. The same patients at once, each for a session of its own: 10 per doctor (morning and
   afternoon, tomorrow and the 4 days after), a doctor to each 10 patients: bookings/s and
   latency; every one HELD.
3. A catalogue of `--hospitals` hospitals in 10 cities (registered in Python, as `medpay seed`
   registers its own, each with a partner client), `--doctors` doctors spread evenly over them in
   up to 10 departments each, and `--days` days of sessions from tomorrow, 2 per doctor per day,
   published through PUT /api/v1/partner/schedules, the real path: one request per hospital
   (50 doctors x 60 days x 2 = 6,000 sessions by default; longer ranges in requests of at most 92
   days and 20,000 sessions), 2 in flight, timed (1.2 million sessions take about a minute, so
   nothing is inserted in SQL). Then ANALYZE (what autovacuum does soon after a load that size),
   and `--concurrency` phones browse it for `--seconds` per kind of request, with random ids:
   hospitals by `region` (a city or a province's prefix) and name (`q`), then the next page of
   those that had one (`after`); a hospital's departments; a department's doctors working on a
   day (`date`), with that day's sessions; a doctor's sessions over 31 days (`from`, `to`,
   `limit=20`), then a next page. Each: requests/s, latency p50/p95/p99, items per page.
4. `medpay audit`'s checks over everything (`full_audit`): they must find the books clean.

The holds are left HELD (no worker runs to expire them): their bills stay CREATED, which is what
a hold is. `--doctors 1000 --days 14` makes a small run. Options given to `./run bench` without a
name reach this one too: `--seconds`, `--patients` and `--concurrency` mean the same here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import statistics
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from backend.audit import full_audit
from backend.booking.tables import ClinicSession
from backend.hospitals.service import ensure_institution
from backend.platform.logging import configure_logging
from backend.settings import Settings
from tests import servers
from tests.bench import qr
from tests.booking.arrange import FEES, china_today, schedule, session
from tests.helpers import bearer, bind_ecert, login, partner_token
from tests.identities import resident_id

PLACES = 30  # the hot session's
SESSIONS_PER_DOCTOR = 10  # part 2: 5 days, morning and afternoon
LOAD_IN_FLIGHT = 2  # schedule requests at once while loading the catalogue (the machine has 2 cores)
MAX_DAYS, MAX_SESSIONS, MAX_DOCTORS = 92, 20_000, 5_000  # what one schedule request may hold
SPAN_DAYS = 31  # a doctor's sessions asked for at once: the most the API gives
CITIES = [
    ("330100", "杭州"),
    ("330200", "宁波"),
    ("330300", "温州"),
    ("330600", "绍兴"),
    ("310100", "上海"),
    ("320100", "南京"),
    ("320500", "苏州"),
    ("110100", "北京"),
    ("440100", "广州"),
    ("510100", "成都"),
]
KINDS = ["人民医院", "中医院", "中心医院", "妇幼保健院", "儿童医院"]
REGIONS = [code for code, _ in CITIES] + sorted({code[:2] for code, _ in CITIES})  # cities, provinces
WORDS = ["人民", "中医", "妇幼", "第一", "医院"]  # what patients type into the search box
DEPARTMENTS = [
    ("CARD", "心血管内科", "冠心病、高血压、心律失常"),
    ("RESP", "呼吸内科", "慢性阻塞性肺病、哮喘"),
    ("GAST", "消化内科", "胃炎、消化道溃疡"),
    ("NEUR", "神经内科", "脑血管病、头痛"),
    ("ENDO", "内分泌科", "糖尿病、甲状腺疾病"),
    ("SURG", "普外科", "甲状腺、乳腺、疝"),
    ("ORTH", "骨科", "骨折、关节置换"),
    ("PAED", "儿科", "小儿呼吸道感染"),
    ("OBGY", "妇产科", "产前检查、妇科炎症"),
    ("OPHT", "眼科", "白内障、青光眼"),
]
ALL_FEES = [
    *FEES,  # CHIEF and ATTENDING, as the booking tests publish them
    {"title": "ASSOCIATE_CHIEF", "fee_fen": 3000, "item_code": "REG002", "item_name": "副主任医师诊查费"},
    {
        "title": "RESIDENT",
        "fee_fen": 1000,
        "item_code": "REG000",
        "item_name": "普通门诊挂号费",
        "category": "C",
    },
]
TITLES = ["CHIEF"] + ["ASSOCIATE_CHIEF"] * 2 + ["ATTENDING"] * 4 + ["RESIDENT"] * 3
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["建国", "敏", "伟", "芳", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "霞"]
PERIODS = [("MORNING", "M", "08:00", "12:00"), ("AFTERNOON", "A", "13:30", "17:00")]


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201


def report(what: str, latencies: list[float], elapsed: float, extra: str = "") -> None:
    ms = sorted(x * 1000 for x in latencies)

    def at(q: float) -> float:
        return ms[min(len(ms) - 1, int(len(ms) * q))]

    say(
        f"{what}: {len(ms) / elapsed:8.1f}/s   p50 {statistics.median(ms):6.1f} ms   "
        f"p95 {at(0.95):6.1f} ms   p99 {at(0.99):6.1f} ms   ({len(ms)} in {elapsed:.1f} s{extra})"
    )


def numeral(n: int) -> str:
    """1 to 99 in Chinese numerals, as hospitals are named (第一, 第十二); larger in digits."""
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n >= 100:
        return str(n)
    tens, ones = divmod(n, 10)
    return (digits[tens] if tens > 1 else "") + "十" + (digits[ones] if ones else "")


# -- the patients ------------------------------------------------------------------------------


class Phone(NamedTuple):
    """A patient's phone: its own connection to the API (a client of its own), and its token."""

    client: httpx.AsyncClient
    headers: dict[str, str]


async def make_patients(
    api: httpx.AsyncClient, sandbox: httpx.AsyncClient, settings: Settings, count: int, concurrency: int
) -> list[dict[str, str]]:
    """`count` patients logged in on a phone, each with an e-certificate of their own bound (ids
    made distinct by birthday and sequence): their headers."""
    run = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(concurrency)

    async def patient(n: int) -> dict[str, str]:
        async with gate:
            tokens = await login(api, sandbox, settings, user=f"bench-booking-{run}-{n}")
            born = (date(1950, 1, 1) + timedelta(days=n // 1000)).strftime("%Y%m%d")
            bound = await bind_ecert(api, tokens, f"测试预约{n}", resident_id(born=born, sequence=n % 1000))
            assert bound.status_code == 200, bound.text
            return bearer(tokens["access_token"])

    return list(await asyncio.gather(*(patient(n) for n in range(count))))


async def browsers(
    api: httpx.AsyncClient, sandbox: httpx.AsyncClient, settings: Settings, count: int
) -> list[dict[str, str]]:
    """Phones logged in just now (browsing needs no e-certificate), so no token runs out."""
    run = uuid.uuid4().hex[:6]
    return [
        bearer((await login(api, sandbox, settings, user=f"bench-browse-{run}-{n}"))["access_token"])
        for n in range(count)
    ]


# -- parts 1 and 2: bookings at once -------------------------------------------------------------


async def book_at_once(bookings: list[tuple[Phone, int]]) -> tuple[Counter[str], list[float], float]:
    """Every (phone, session) POSTed at once, each phone's connection opened beforehand:
    (outcomes, latencies, wall seconds)."""

    async def one(phone: Phone, session_id: int) -> tuple[str, float]:
        started = time.perf_counter()
        answer = await phone.client.post(
            "/api/v1/appointments",
            json={"session_id": session_id},
            headers={**phone.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        elapsed = time.perf_counter() - started
        body = answer.json()
        outcome = body["state"] if answer.status_code == 201 else body["error"]["code"]
        return f"{answer.status_code} {outcome}", elapsed

    warmed = await asyncio.gather(*(phone.client.get("/health/live") for phone, _ in bookings))
    assert all(answer.status_code == 200 for answer in warmed)
    began = time.perf_counter()
    done = await asyncio.gather(*(one(phone, session_id) for phone, session_id in bookings))
    wall = time.perf_counter() - began
    return Counter(outcome for outcome, _ in done), [latency for _, latency in done], wall


def outcomes(counted: Counter[str]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in counted.most_common())


async def hot_session(api: httpx.AsyncClient, his: dict[str, str], phones: list[Phone]) -> None:
    body = schedule([session(capacity=PLACES, code="BENCH-HOT")])
    answer = await api.put("/api/v1/partner/schedules", json=body, headers=his)
    assert answer.status_code == 200, answer.text
    hot = await ClinicSession.select(ClinicSession.id).where(ClinicSession.code == "BENCH-HOT").first()
    assert hot is not None
    counted, latencies, wall = await book_at_once([(phone, hot["id"]) for phone in phones])
    held = min(PLACES, len(phones))
    expected = Counter({"201 HELD": held, "409 SESSION_FULL": len(phones) - held})
    booked = await ClinicSession.select(ClinicSession.booked).where(ClinicSession.id == hot["id"]).first()
    if counted != +expected or booked is None or booked["booked"] != held:
        raise SystemExit(
            f"the hot session answered {outcomes(counted)} and counts {booked}: expected {held} held"
        )
    say(
        f"  {len(phones)} patients at once for one session of {PLACES} places: {outcomes(counted)}, "
        f"in {wall:.2f} s wall"
    )
    report("bookings on one hot session (requests answered)", latencies, wall)


async def many_sessions(api: httpx.AsyncClient, his: dict[str, str], phones: list[Phone]) -> None:
    doctors = -(-len(phones) // SESSIONS_PER_DOCTOR)
    tomorrow = china_today() + timedelta(days=1)
    body = hospital_schedule("M", doctors, tomorrow, SESSIONS_PER_DOCTOR // len(PERIODS))
    answer = await api.put("/api/v1/partner/schedules", json=body, headers=his)
    assert answer.status_code == 200, answer.text
    rows = await ClinicSession.raw(
        "SELECT id FROM booking_session WHERE code LIKE 'M%' ORDER BY id LIMIT {}", len(phones)
    )
    counted, latencies, wall = await book_at_once(
        [(phone, row["id"]) for phone, row in zip(phones, rows, strict=True)]
    )
    if counted != Counter({"201 HELD": len(phones)}):
        raise SystemExit(f"booking sessions of their own answered {outcomes(counted)}")
    say(
        f"  {len(phones)} patients at once, each for a session of its own ({doctors} doctors, "
        f"{len(body['sessions'])} sessions): {outcomes(counted)}, in {wall:.2f} s wall"
    )
    report("bookings on many sessions", latencies, wall)


# -- part 3: the catalogue -------------------------------------------------------------------------


def hospital_schedule(prefix: str, doctors: int, first: date, days: int, seed: int = 0) -> dict[str, Any]:
    """A hospital's fees, departments, `doctors` doctors and their sessions, morning and
    afternoon, for `days` days from `first`."""
    departments = DEPARTMENTS[: max(1, min(len(DEPARTMENTS), doctors))]
    staff = [
        {
            "code": f"{prefix}{j:04d}",
            "department": departments[j % len(departments)][0],
            "name": SURNAMES[(j + seed) % len(SURNAMES)] + GIVEN[(j * 7 + seed) % len(GIVEN)],
            "title": TITLES[j % len(TITLES)],
            "specialty": departments[j % len(departments)][2],
        }
        for j in range(doctors)
    ]
    sessions = [
        {
            "code": f"{doctor['code']}-{day:%Y%m%d}-{letter}",
            "doctor": doctor["code"],
            "date": day.isoformat(),
            "period": period,
            "start": start,
            "end": end,
            "capacity": 20 + 5 * (j % 3),
        }
        for n in range(days)
        for day in [first + timedelta(days=n)]
        for j, doctor in enumerate(staff)
        for period, letter, start, end in PERIODS
    ]
    return {
        "from": first.isoformat(),
        "to": (first + timedelta(days=days - 1)).isoformat(),
        "fees": ALL_FEES,
        "departments": [{"code": code, "name": name, "intro": intro} for code, name, intro in departments],
        "doctors": staff,
        "sessions": sessions,
    }


def hospitals(count: int) -> list[tuple[str, str, int, str]]:
    """(code, name, level, region) of `count` hospitals, spread over the cities."""
    made = []
    for n in range(count):
        region, city = CITIES[n % len(CITIES)]
        k = n // len(CITIES)
        ordinal = k // len(KINDS) + 1
        level = max(1, 4 - ordinal)
        made.append(
            (f"BK{region}{n:04d}", f"{city}市第{numeral(ordinal)}{KINDS[k % len(KINDS)]}", level, region)
        )
    return made


async def load_catalogue(api: httpx.AsyncClient, args: argparse.Namespace) -> tuple[date, date]:
    """The catalogue published hospital by hospital through the API; its first and last day."""
    first = china_today() + timedelta(days=1)
    registered = hospitals(args.hospitals)
    began = time.perf_counter()
    for code, name, level, region in registered:
        await ensure_institution(code, name, level, region)
    say(f"  {len(registered)} hospitals registered in {time.perf_counter() - began:.1f} s")
    share, more = divmod(args.doctors, args.hospitals)
    per_request = max(1, min(MAX_DAYS, MAX_SESSIONS // (len(PERIODS) * (share + 1))))
    work = [
        (n, code, share + (n < more), start)
        for n, (code, *_) in enumerate(registered)
        for start in range(0, args.days, per_request)
    ]
    latencies: list[float] = []
    created = 0
    gate = asyncio.Semaphore(LOAD_IN_FLIGHT)

    async def publish(n: int, code: str, doctors: int, start: int) -> None:
        nonlocal created
        async with gate:
            # Each hospital's own system, its token asked for just before (they last 15 minutes).
            his = bearer(await partner_token(api, "hospital", ["bookings:write"], code))
            days = min(per_request, args.days - start)
            body = hospital_schedule("D", doctors, first + timedelta(days=start), days, seed=n)
            started = time.perf_counter()
            answer = await api.put("/api/v1/partner/schedules", json=body, headers=his)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            created += answer.json()["sessions_created"]

    began = time.perf_counter()
    await asyncio.gather(*(publish(*job) for job in work))
    loaded = time.perf_counter() - began
    expected = args.doctors * args.days * len(PERIODS)
    if created != expected:
        raise SystemExit(f"{created} sessions created of {expected}")
    say(
        f"catalogue loaded through PUT /api/v1/partner/schedules: {args.hospitals} hospitals, "
        f"{args.doctors} doctors, {created} sessions over {args.days} days ({first} to "
        f"{first + timedelta(days=args.days - 1)}) in {loaded:.1f} s: {created / loaded:,.0f} sessions/s, "
        f"{len(work)} requests, {LOAD_IN_FLIGHT} in flight"
    )
    report("  schedule requests", latencies, loaded)
    began = time.perf_counter()
    await ClinicSession.raw("ANALYZE booking_session")
    await ClinicSession.raw("ANALYZE booking_doctor")
    await ClinicSession.raw("ANALYZE booking_department")
    size = await ClinicSession.raw(
        "SELECT pg_size_pretty(pg_total_relation_size('booking_session')) AS total, "
        "pg_size_pretty(pg_relation_size('booking_session')) AS heap"
    )
    say(
        f"  ANALYZE in {time.perf_counter() - began:.1f} s; booking_session {size[0]['heap']} "
        f"({size[0]['total']} with its indexes)"
    )
    return first, first + timedelta(days=args.days - 1)


Ask = tuple[str, dict[str, Any]]  # a request: its path and query


async def browse_for(
    phones: list[Phone],
    what: str,
    seconds: float,
    ask: Callable[[random.Random], Ask],
    pages: list[Ask] | None = None,
) -> None:
    """`len(phones)` loops GET what `ask` makes for `seconds`; the requests whose answer had a
    next page are kept in `pages`, with their `after`."""
    latencies: list[float] = []
    items: list[int] = []
    deadline = time.perf_counter() + seconds

    async def loop(worker: int) -> None:
        rng = random.Random(worker)
        while True:  # at least once, however short the run
            path, params = ask(rng)
            started = time.perf_counter()
            answer = await phones[worker].client.get(path, params=params, headers=phones[worker].headers)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, (path, params, answer.text)
            page = answer.json()
            items.append(len(page["items"]))
            if pages is not None and page["next_after"]:
                pages.append((path, {**params, "after": page["next_after"]}))
            if time.perf_counter() >= deadline:
                return

    began = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(len(phones))))
    elapsed = time.perf_counter() - began
    report(what, latencies, elapsed, f", {statistics.mean(items):.1f} items a page")


async def browse(phones: list[Phone], seconds: float, first: date, last: date) -> None:
    ids = {
        kind: [row["id"] for row in await ClinicSession.raw(query)]
        for kind, query in [
            ("hospitals", "SELECT id FROM institution WHERE code LIKE 'BK%'"),
            (
                "departments",
                "SELECT d.id FROM booking_department d JOIN institution i ON i.id = d.institution_id "
                "WHERE i.code LIKE 'BK%'",
            ),
            (
                "doctors",
                "SELECT d.id FROM booking_doctor d JOIN institution i ON i.id = d.institution_id "
                "WHERE i.code LIKE 'BK%'",
            ),
        ]
    }
    days = (last - first).days + 1
    span = min(SPAN_DAYS, days)

    def day(rng: random.Random, latest: date) -> date:
        return first + timedelta(days=rng.randrange((latest - first).days + 1))

    def hospitals_asked(rng: random.Random) -> Ask:
        return "/api/v1/hospitals", {"region": rng.choice(REGIONS), "q": rng.choice(WORDS)}

    def sessions_asked(rng: random.Random) -> Ask:
        start = day(rng, last - timedelta(days=span - 1))
        return f"/api/v1/doctors/{rng.choice(ids['doctors'])}/sessions", {
            "from": start.isoformat(),
            "to": (start + timedelta(days=span - 1)).isoformat(),
            "limit": 20,
        }

    hospital_pages: list[Ask] = []
    session_pages: list[Ask] = []
    kinds: list[tuple[str, Callable[[random.Random], Ask], list[Ask] | None]] = [
        ("GET /hospitals?region=&q=", hospitals_asked, hospital_pages),
        ("GET /hospitals?region=&q=&after= (the next page)", lambda rng: rng.choice(hospital_pages), None),
        (
            "GET /hospitals/{id}/departments",
            lambda rng: (f"/api/v1/hospitals/{rng.choice(ids['hospitals'])}/departments", {}),
            None,
        ),
        (
            "GET /departments/{id}/doctors?date=",
            lambda rng: (
                f"/api/v1/departments/{rng.choice(ids['departments'])}/doctors",
                {"date": day(rng, last).isoformat()},
            ),
            None,
        ),
        (f"GET /doctors/{{id}}/sessions?from=&to= ({span} days)", sessions_asked, session_pages),
        (
            "GET /doctors/{id}/sessions?...&after= (the next page)",
            lambda rng: rng.choice(session_pages),
            None,
        ),
    ]
    for n, (what, ask, pages) in enumerate(kinds):
        if "next page" in what and not kinds[n - 1][2]:
            say(f"{what}: no first page had a next page")
            continue
        await browse_for(phones, what, seconds, ask, pages)


# -- the whole run -------------------------------------------------------------------------------


async def audited() -> None:
    began = time.perf_counter()
    problems, counts = await full_audit()
    if problems:
        shown = "\n  ".join(problems[:20])
        raise SystemExit(f"audit: {len(problems)} problems:\n  {shown}")
    say(f"audit: clean, in {time.perf_counter() - began:.1f} s: {counts}")


def phone(url: str, headers: dict[str, str], tls: ssl.SSLContext) -> Phone:
    """A phone's own client; they share one TLS context (unused over plain HTTP, and making one
    for each client, httpx's default, takes 45 ms)."""
    return Phone(httpx.AsyncClient(base_url=url, timeout=120, verify=tls), headers)


async def bench(settings: Settings, args: argparse.Namespace) -> None:
    tls = ssl.create_default_context()
    async with qr.serving(settings) as (_, _, sandbox):  # its in-process app goes unused
        with (
            tempfile.TemporaryDirectory() as scratch,
            servers.web(settings, Path(scratch) / "web.log") as url,
        ):
            limits = httpx.Limits(max_connections=args.concurrency + 4)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as api:
                say(f"parts 1 and 2: the API served by `medpay web` at {url}")
                began = time.perf_counter()
                patients = await make_patients(api, sandbox, settings, args.patients, args.concurrency)
                say(
                    f"  {args.patients} patients logged in and bound over the API in "
                    f"{time.perf_counter() - began:.1f} s, {args.concurrency} at a time"
                )
                his = bearer(await partner_token(api, "hospital", ["bookings:write"], "H33010001"))
                # A client per phone: one pool of 500 connections costs httpx more CPU than the
                # server spends answering.
                async with AsyncExitStack() as own:
                    phones = [phone(url, headers, tls) for headers in patients]
                    for each in phones:
                        await own.enter_async_context(each.client)
                    await hot_session(api, his, phones)
                    await many_sessions(api, his, phones)
                say("part 3: the catalogue")
                first, last = await load_catalogue(api, args)
                async with AsyncExitStack() as own:
                    browsing = [
                        phone(url, h, tls) for h in await browsers(api, sandbox, settings, args.concurrency)
                    ]
                    for each in browsing:
                        await own.enter_async_context(each.client)
                    say(
                        f"  browsed by {args.concurrency} loops (a phone each), {args.seconds:g} s per "
                        "kind of request, random ids"
                    )
                    await browse(browsing, args.seconds, first, last)
        say("part 4: the audit")
        await audited()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--patients", type=int, default=500, help="patients booking at once")
    parser.add_argument("--hospitals", type=int, default=200, help="hospitals in the catalogue")
    parser.add_argument("--doctors", type=int, default=10_000, help="doctors, spread over the hospitals")
    parser.add_argument("--days", type=int, default=60, help="days of sessions, 2 per doctor per day")
    parser.add_argument("--seconds", type=float, default=10.0, help="browsing, per kind of request")
    parser.add_argument("--concurrency", type=int, default=16, help="browsing loops; patients bound at once")
    args = parser.parse_args()
    if min(args.patients, args.hospitals, args.doctors, args.days, args.concurrency) < 1 or args.seconds <= 0:
        parser.error("every option must be at least 1")
    if args.patients > MAX_SESSIONS:
        parser.error(f"at most {MAX_SESSIONS} patients: part 2 publishes a session for each in one request")
    if args.doctors < args.hospitals or -(-args.doctors // args.hospitals) > MAX_DOCTORS:
        parser.error(f"give each hospital 1 to {MAX_DOCTORS} doctors")
    configure_logging("WARNING")
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    workers = int(os.environ.get("MEDPAY_WEB_WORKERS", "1"))
    began = time.perf_counter()
    with servers.bench_settings() as settings:
        say(
            f"{os.cpu_count()} cores; --patients {args.patients} --hospitals {args.hospitals} "
            f"--doctors {args.doctors} --days {args.days} --seconds {args.seconds:g} "
            f"--concurrency {args.concurrency}; `medpay web` (granian, {workers} worker"
            f"{'s' if workers > 1 else ''}) over HTTP"
        )
        asyncio.run(bench(settings, args))
    say(f"whole run: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
