"""Benchmark: bills created and paid per second, through the HTTP API, with the books audited after.

    ./run bench pay [--seconds 10] [--patients 32] [--concurrency 16]

In-process ASGI against real PostgreSQL and Redis and the sandbox partners. Each loop is a
hospital system billing a patient and the patient paying: by personal account (settled in one
transaction), or with the cash part by WeChat Pay (the channel order over HTTP, the payer's
confirmation, the signed notification into the inbox). The notifications are then applied by an
arq worker, timed on its own, and `medpay audit`'s checks run over everything written.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from arq.worker import Worker

from backend.audit import full_audit
from backend.billing.tables import Bill
from backend.settings import Settings
from tests.bench.qr import report, run_benchmark, serving
from tests.billing.factories import Insured, visit_token
from tests.helpers import bearer, bind_ecert, login, partner_token
from tests.identities import employee_id, resident_id
from workers.settings import worker_settings

REGISTRATION = [
    {"code": "REG001", "name": "普通门诊挂号费", "category": "A", "quantity": 1, "unit_price_fen": 500}
]
ITEMS = [
    {"code": "REG001", "name": "诊查费", "category": "A", "quantity": 1, "unit_price_fen": 2500},
    {"code": "MED201", "name": "阿莫西林胶囊", "category": "B", "quantity": 2, "unit_price_fen": 1850},
    {"code": "CT0001", "name": "胸部CT平扫", "category": "A", "quantity": 1, "unit_price_fen": 60000},
]


async def bench(settings: Settings, seconds: float, patients: int, concurrency: int) -> None:
    async with serving(settings) as (runtime, client, sandbox):
        his = bearer(await partner_token(client, "hospital", ["bills:write"], "H33010001"))

        async def patient(n: int, employee: bool) -> tuple[dict[str, str], str]:
            user = f"bench-pay-{n}-{uuid.uuid4().hex[:6]}"
            tokens = await login(client, sandbox, settings, user=user)
            number = (
                employee_id()
                if employee
                else next(i for i in (resident_id() for _ in range(100)) if int(i[16]) % 2 == 0)
            )
            bound = await bind_ecert(client, tokens, f"测试付款{n}", number)
            assert bound.status_code == 200, bound.text
            insured = Insured(tokens, bound.json()["cert_no"], "wechat", user, number)
            await visit_token(client, insured)  # the hospital may bill them by cert_no
            return insured.headers, insured.cert_no

        for label, employee in (("by personal account", True), ("with WeChat Pay", False)):
            phones = [await patient(n, employee) for n in range(patients)]
            await run_mode(client, sandbox, his, phones, label, employee, seconds, concurrency)

        began = time.perf_counter()
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
        before = await Bill.count().where(Bill.state == "PAID")
        # Expiry and payment-check jobs are deferred well past this run: leave them queued.
        await runtime.redis.zremrangebyscore(worker.queue_name, time.time() * 1000 + 60_000, "+inf")
        await worker.main()
        await worker.close()
        elapsed = time.perf_counter() - began
        applied = await Bill.count().where(Bill.state == "PAID") - before
        print(  # noqa: T201
            f"notifications applied by one worker: {applied / elapsed:8.1f}/s   "
            f"({applied} bills completed and their notifications recorded in {elapsed:.1f} s)"
        )
        problems, counts = await full_audit()
        print(f"audit: {problems or 'clean'}: {counts}")  # noqa: T201


async def run_mode(
    client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    his: dict[str, str],
    phones: list[tuple[dict[str, str], str]],
    label: str,
    employee: bool,
    seconds: float,
    concurrency: int,
) -> None:
    """Bill and pay in `concurrency` loops for `seconds`; print the rates and latencies."""
    created: list[float] = []
    paid: list[float] = []
    deadline = time.perf_counter() + seconds
    # A registration fee is small enough for a personal account to pay hundreds of times.
    items = REGISTRATION if employee else ITEMS
    body = {"use_personal_account": True} if employee else {"cash_method": "wechat"}

    async def loop(worker: int) -> None:
        own = phones[worker::concurrency]
        n = 0
        while time.perf_counter() < deadline:
            phone, cert_no = own[n % len(own)]
            n += 1
            started = time.perf_counter()
            bill = await client.post(
                "/api/v1/partner/bills",
                json={"order_type": "DIAG", "cert_no": cert_no, "items": items},
                headers={**his, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert bill.status_code == 201, bill.text
            created.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = await client.post(
                f"/api/v1/bills/{bill.json()['id']}/pay",
                json=body,
                headers={**phone, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert answer.status_code == 200, answer.text
            if not employee:
                confirm = {"out_trade_no": answer.json()["out_trade_no"], "deliver": False}
                note = (await sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).json()
                received = await client.post(
                    "/api/v1/payments/notify/wechat",
                    content=note["notification"]["body"].encode(),
                    headers={**note["notification"]["headers"], "Content-Type": "application/json"},
                )
                assert received.status_code == 204, received.text
            paid.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    report(f"bills created ({label})", created, elapsed)
    report(f"bills paid ({label})", paid, elapsed)


def main() -> None:
    run_benchmark(
        __doc__,
        bench,
        32,
        lambda a: (
            f"{a.patients} patients per mode, {a.concurrency} concurrent bill-and-pay loops, "
            f"{a.seconds:.0f} s each, in-process ASGI"
        ),
    )


if __name__ == "__main__":
    main()
