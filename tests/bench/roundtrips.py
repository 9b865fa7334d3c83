"""Round trips to PostgreSQL per request, counted: what one bill created, presettled and paid costs.

    ./run bench roundtrips [--repeat 5]

In-process ASGI on throw-away servers (embedded, or DATABASE_URL / REDIS_URL) with the sandbox
partners. Every statement the pool's connections send is seen by an asyncpg query logger; for each
kind of request (after one warm-up of each, so prepared statements and caches are in place) it
prints the statements per request, how many open or end a transaction, and the statements with
their counts (`--full`: each in full, in the order sent). A WeChat Pay cash part is counted
through the notification's arrival and its application by an in-process worker.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from arq.constants import default_queue_name

from backend.platform import database
from backend.platform.logging import configure_logging
from backend.platform.runtime import Runtime
from backend.settings import Settings
from tests import servers
from tests.bench.credit import drain as run_due_jobs
from tests.bench.qr import serving
from tests.billing.factories import Insured, his_headers, insured_patient, new_bill, pay
from workers.settings import worker_settings

SMALL = [{"code": "REG001", "name": "普通门诊挂号费", "category": "A", "quantity": 1, "unit_price_fen": 500}]
CASH = [{"code": "CT0001", "name": "胸部CT平扫", "category": "C", "quantity": 1, "unit_price_fen": 6000}]
Step = Callable[[], Awaitable[Any]]


class Statements:
    """Every statement sent, while counting is on."""

    def __init__(self) -> None:
        self.on = False
        self.seen: list[str] = []

    async def watch(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self.log)

    def log(self, record: Any) -> None:
        if self.on:
            self.seen.append(" ".join(record.query.split()))

    async def count(self, step: Step) -> list[str]:
        self.seen, self.on = [], True
        try:
            await step()
        finally:
            self.on = False
        return self.seen


def shape(statement: str) -> str:
    """A statement without its literals, shortened: how it is listed."""
    text = re.sub(r"'[^']*'", "'…'", statement)
    return text if len(text) <= 150 else text[:147] + "..."


def is_transaction_edge(statement: str) -> bool:
    return statement.split(" ", 1)[0].rstrip(";").upper() in {"BEGIN", "COMMIT", "ROLLBACK"}


async def drain(settings: Settings, runtime: Runtime) -> None:
    """The jobs due now run (a notification's application); those deferred a minute or more (an
    expiry, a payment check) are dropped first, so the burst worker does not wait for them."""
    queue = worker_settings(settings).get("queue_name", default_queue_name)
    await runtime.redis.zremrangebyscore(queue, time.time() * 1000 + 60_000, "+inf")
    await run_due_jobs(settings, runtime)


async def bench(settings: Settings, repeat: int, full: bool) -> None:
    statements = Statements()
    await database.open_pool(settings.database, on_connect=statements.watch)
    async with serving(settings) as (runtime, client, sandbox):
        his = await his_headers(client)
        employee = await insured_patient(client, sandbox, settings)
        resident = await insured_patient(client, sandbox, settings, insurance="resident")

        async def bill(patient: Insured, items: list[dict[str, Any]]) -> str:
            return str((await new_bill(client, his, patient, items))["id"])

        async def created() -> None:
            await bill(employee, SMALL)

        async def presettled(bill_id: str) -> None:
            answer = await client.post(
                f"/api/v1/bills/{bill_id}/presettle", json={}, headers=employee.headers
            )
            assert answer.status_code == 200, answer.text

        async def paid(bill_id: str) -> None:
            answer = await pay(client, employee, bill_id, use_personal_account=True)
            assert answer.status_code == 200, answer.text

        async def paid_by_wechat(bill_id: str) -> None:
            answer = await pay(client, resident, bill_id, cash_method="wechat")
            assert answer.status_code == 200, answer.text
            trade = answer.json()["out_trade_no"]
            confirm = {"out_trade_no": trade, "deliver": False}
            note = (await sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).json()["notification"]
            headers = {**note["headers"], "Content-Type": "application/json"}
            posted = await client.post(
                "/api/v1/payments/notify/wechat", content=note["body"], headers=headers
            )
            assert posted.status_code in (200, 204), posted.text
            await drain(settings, runtime)

        kinds: list[tuple[str, Callable[[], Awaitable[Step]]]] = [
            ("bill created (hospital)", _ready(created)),
            ("presettle", _with_bill(bill, employee, SMALL, presettled)),
            ("pay, fund + personal account", _with_bill(bill, employee, SMALL, paid)),
            (
                "pay with WeChat Pay, through the notification applied",
                _with_bill(bill, resident, CASH, paid_by_wechat),
            ),
        ]
        for label, prepare in kinds:
            await (await prepare())()  # warm-up: prepared statements, caches
            runs = [await statements.count(await prepare()) for _ in range(repeat)]
            per = [len(run) for run in runs]
            edges = sum(1 for s in runs[-1] if is_transaction_edge(s))
            print(f"\n{label}: {min(per)}-{max(per)} statements per request ({edges} BEGIN/COMMIT)")  # noqa: T201
            if full:
                for text in runs[-1]:
                    print(f"  {text}")  # noqa: T201
                continue
            for text, n in Counter(shape(s) for s in runs[-1]).most_common():
                print(f"  {n:3d} x {text}")  # noqa: T201


def _ready(step: Step) -> Callable[[], Awaitable[Step]]:
    async def prepare() -> Step:
        return step

    return prepare


def _with_bill(
    bill: Callable[[Insured, list[dict[str, Any]]], Awaitable[str]],
    patient: Insured,
    items: list[dict[str, Any]],
    step: Callable[[str], Awaitable[None]],
) -> Callable[[], Awaitable[Step]]:
    """A fresh bill made before counting starts, and the step on it."""

    async def prepare() -> Step:
        bill_id = await bill(patient, items)
        return lambda: step(bill_id)

    return prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="every statement in full, in the order sent")
    args = parser.parse_args()
    configure_logging("WARNING")
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    with servers.bench_settings() as settings:
        asyncio.run(bench(settings, args.repeat, args.full))


if __name__ == "__main__":
    main()
