"""Benchmark: bills created and paid per second, through the HTTP API, with the books audited after.

    ./run bench pay [--seconds 10] [--patients 32] [--concurrency 16]

In-process ASGI against real PostgreSQL and Redis and the sandbox partners, the load sent through
the typed client (`miniprogram_stub.api`). Each loop is a hospital system billing a patient and the
patient paying: by personal account (settled in one transaction), or with the cash part by WeChat
Pay (the channel order over HTTP, the payer's confirmation, the signed notification into the
inbox). The notifications are then applied by an arq worker, timed on its own, and `medpay audit`'s
checks run over everything written.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from arq.worker import Worker

from backend.audit import full_audit
from backend.billing.tables import Bill
from backend.oauth.service import create_client
from backend.settings import Settings
from miniprogram_stub.api import Medpay
from miniprogram_stub.api import models as m
from tests.bench.qr import report, run_benchmark, serving
from tests.helpers import login_code
from tests.identities import employee_id, resident_id
from workers.settings import worker_settings

REGISTRATION = [m.ItemIn(code="REG001", name="普通门诊挂号费", category="A", quantity=1, unit_price_fen=500)]
ITEMS = [
    m.ItemIn(code="REG001", name="诊查费", category="A", quantity=1, unit_price_fen=2500),
    m.ItemIn(code="MED201", name="阿莫西林胶囊", category="B", quantity=2, unit_price_fen=1850),
    m.ItemIn(code="CT0001", name="胸部CT平扫", category="A", quantity=1, unit_price_fen=60000),
]
# A phone, and the cert_no the hospital bills it by.
Phone = tuple[Medpay, str]


async def bench(settings: Settings, seconds: float, patients: int, concurrency: int) -> None:
    async with serving(settings) as (runtime, client, sandbox):
        api = Medpay(client)
        his = await partner(api, "hospital", "bills:write")
        terminal = await partner(api, "terminal", "ecert:decode")

        async def patient(n: int, employee: bool) -> Phone:
            code = await login_code(sandbox, settings, "wechat", f"bench-pay-{n}-{uuid.uuid4().hex[:6]}")
            tokens = await api.auth.login(m.LoginRequest(channel="wechat", code=code))
            phone = api.as_token(tokens.access_token)
            number = (
                employee_id()
                if employee
                else next(i for i in (resident_id() for _ in range(100)) if int(i[16]) % 2 == 0)
            )
            ecert = await phone.ecert.bind(
                m.BindRequest(name=f"测试付款{n}", id_type="resident_id", id_number=number)
            )
            # A visit today: the hospital may bill them by cert_no.
            await terminal.ecert.decode((await phone.ecert.qrcode()).payload)
            return phone, ecert.cert_no

        for label, employee in (("by personal account", True), ("with WeChat Pay", False)):
            phones = [await patient(n, employee) for n in range(patients)]
            await run_mode(api, sandbox, his, phones, label, employee, seconds, concurrency)

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


async def partner(api: Medpay, kind: str, scope: str) -> Medpay:
    """A partner registered for the run at the demo hospital, holding its token."""
    credentials = await create_client(kind, f"bench {kind}", [scope], "H33010001")
    return await api.as_partner(credentials.client_id, credentials.client_secret)


async def run_mode(
    api: Medpay,
    sandbox: httpx.AsyncClient,
    his: Medpay,
    phones: list[Phone],
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
    body = m.PayRequest(use_personal_account=True) if employee else m.PayRequest(cash_method="wechat")

    async def loop(worker: int) -> None:
        own = phones[worker::concurrency]
        n = 0
        while time.perf_counter() < deadline:
            phone, cert_no = own[n % len(own)]
            n += 1
            started = time.perf_counter()
            bill = await his.bills.create(m.BillCreate(order_type="DIAG", cert_no=cert_no, items=items))
            created.append(time.perf_counter() - started)
            started = time.perf_counter()
            payment = await phone.bills.pay(bill.id, body)
            if not employee:
                # The payer confirms; the sandbox signs WeChat Pay's notification and, not
                # delivering it itself, hands it back for this loop to post, timed.
                confirm = {"out_trade_no": payment.out_trade_no, "deliver": False}
                answer = (await sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).raise_for_status()
                note = answer.json()["notification"]
                headers = {**note["headers"], "Content-Type": "application/json"}
                await api.payments.notify_wechat(note["body"].encode(), headers)
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
