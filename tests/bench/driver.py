"""The asyncio load driver of `medpay bench`, for what wrk cannot do: pay with a WeChat Pay cash part
through to the notification applied, each bill timed from its pay request to its bill PAID.

    python -m tests.bench.driver wechat --data FILE --clients 32 --seconds 10 \\
        --api URL --sandbox URL --database URL

A process of its own (its CPU is measured by whoever starts it). `--clients` loops, each over its
share of the bills in FILE (JSON lines: {"bill", "token"}): the patient pays (the JSAPI and
medical-insurance orders are made at WeChat Pay), the payer confirms in the sandbox, which signs
the notification and posts it to medpay itself; an arq worker applies it and the bill is PAID.
A loop starts its next bill once its bill is PAID, until `--seconds` are over. One SQL poller
(every 10 ms, one query for every bill in flight) sees the bills turn PAID, where a phone would
poll GET /bills/{id}: the measurement does not load the API with its own polling.
Prints one line: BENCH_RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from miniprogram_stub.api import ApiError, Medpay
from miniprogram_stub.api import models as m

PAID_TIMEOUT = 60.0


class PaidWatch:
    """Bills awaited until PAID, all watched by one query per tick."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.waiting: dict[str, asyncio.Future[float]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        connection = await asyncpg.connect(self.database_url)
        try:
            while not stop.is_set():
                if self.waiting:
                    rows = await connection.fetch(
                        "SELECT id::text FROM bill WHERE id = ANY($1::uuid[]) AND state = 'PAID'",
                        list(self.waiting),
                    )
                    now = time.perf_counter()
                    for row in rows:
                        future = self.waiting.pop(row["id"], None)
                        if future is not None and not future.done():
                            future.set_result(now)
                await asyncio.sleep(0.01)
        finally:
            await connection.close()

    def paid(self, bill: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[bill] = future
        return future


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]

    return {"p50": at(50), "p95": at(95), "p99": at(99), "max": ordered[-1]}


async def wechat(args: argparse.Namespace, items: list[dict[str, str]]) -> dict[str, Any]:
    watch = PaidWatch(args.database)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    to_paid: list[float] = []
    to_pay: list[float] = []
    errors: dict[str, int] = {}
    left_over = 0
    async with (
        httpx.AsyncClient(base_url=args.api, timeout=30, limits=limits) as http,
        httpx.AsyncClient(base_url=args.sandbox, timeout=30, limits=limits) as sandbox,
    ):
        api = Medpay(http)
        poller = asyncio.create_task(watch.run(stop))
        deadline = time.perf_counter() + args.seconds

        async def one(item: dict[str, str]) -> None:
            started = time.perf_counter()
            phone = api.as_token(item["token"])
            payment = await phone.bills.pay(item["bill"], m.PayRequest(cash_method="wechat"))
            to_pay.append(time.perf_counter() - started)
            paid = watch.paid(item["bill"])
            confirm = {"out_trade_no": payment.out_trade_no, "deliver": True}
            (await sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).raise_for_status()
            to_paid.append(await asyncio.wait_for(paid, PAID_TIMEOUT) - started)

        async def loop(worker: int) -> None:
            nonlocal left_over
            for item in items[worker :: args.clients]:
                if time.perf_counter() >= deadline:
                    return
                await counted(errors, lambda item=item: one(item))
            left_over += 1  # this loop ran out of bills before the time was up

        began = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in range(args.clients)))
        elapsed = time.perf_counter() - began
        stop.set()
        await poller
    return {
        "ops": len(to_paid),
        "seconds": elapsed,
        "latency_s": percentiles(to_paid),
        "pay_request_s": percentiles(to_pay),
        "errors": errors,
        "exhausted": left_over > 0,
    }


async def counted(errors: dict[str, int], work: Callable[[], Awaitable[None]]) -> None:
    """Run one bill; a refusal or a failure is counted by its kind, and the loop goes on."""
    try:
        await work()
    except ApiError as exc:
        errors[f"{exc.status} {exc.code}"] = errors.get(f"{exc.status} {exc.code}", 0) + 1
    except (httpx.HTTPError, TimeoutError) as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("flow", choices=["wechat"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    items = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    result = asyncio.run(wechat(args, items))
    print("BENCH_RESULT " + json.dumps(result), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
