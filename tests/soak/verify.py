"""What `./run soak` checks once the load has stopped and the system has caught up: nothing lost
(every accepted request has its effect), nothing doubled (no bill charged twice at a channel, no
drawdown disbursed twice, no message sent twice, no journal posted twice), places never overbooked,
and our books equal to the sandbox channels' and the sandbox bank's. `medpay audit` runs beside.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import asyncpg
import httpx

from tests.books import disagreements_with_the_bank, disagreements_with_the_channels
from tests.soak.chaos import say
from tests.soak.flows import Flow

# What is still moving: work in the outbox or the inbox, payments and refunds the channel has not
# answered, drawdowns the bank has not, holds not yet paid or expired.
PENDING = {
    "outbox messages": "SELECT count(*) FROM outbox_message WHERE done_at IS NULL AND failed_at IS NULL",
    "inbox events": "SELECT count(*) FROM inbox_event WHERE state NOT IN ('applied', 'ignored', 'flagged')",
    "bills paying": "SELECT count(*) FROM bill WHERE state = 'PAYING'",
    "refunds": "SELECT count(*) FROM bill_refund WHERE state IN ('REQUESTED', 'PROCESSING')",
    "drawdowns": "SELECT count(*) FROM credit_drawdown WHERE status = 'RESERVED'",
    "notifications": "SELECT count(*) FROM notification WHERE status IN ('pending', 'sending')",
}


async def settled(database_url: str, limit_s: float) -> dict[str, int]:
    """Wait until nothing is pending (or `limit_s`); what is still pending."""
    began, last_said = time.monotonic(), 0.0
    while True:
        connection = await _connect(database_url)
        try:
            left = {what: int(await connection.fetchval(sql)) for what, sql in PENDING.items()}
        finally:
            await connection.close()
        left = {what: n for what, n in left.items() if n}
        waited = time.monotonic() - began
        if not left or waited > limit_s:
            return left
        if waited - last_said > 15:
            say(f"catching up: {left}")
            last_said = waited
        await asyncio.sleep(2)


async def _connect(database_url: str) -> asyncpg.Connection:
    for _ in range(60):
        try:
            return await asyncpg.connect(database_url)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(1)
    return await asyncpg.connect(database_url)


async def lost(database_url: str, flows: Iterable[Flow]) -> list[str]:
    """Accepted requests without their effect."""
    flows = list(flows)
    bills = sorted({b for f in flows for b in f.paid_bills})
    refunds = sorted({r for f in flows for r in f.refunds})
    appointments = {a: state for f in flows for a, state in f.appointments.items()}
    connection = await asyncpg.connect(database_url)
    try:
        unpaid = await connection.fetch(
            "SELECT id::text, state FROM bill WHERE id = ANY($1::uuid[]) "
            "AND state NOT IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED')",
            bills,
        )
        known = await connection.fetchval("SELECT count(*) FROM bill WHERE id = ANY($1::uuid[])", bills)
        unrefunded = await connection.fetch(
            "SELECT id::text, state FROM bill_refund WHERE id = ANY($1::uuid[]) AND state <> 'SUCCEEDED'",
            refunds,
        )
        rows = await connection.fetch(
            "SELECT id::text, state FROM appointment WHERE id = ANY($1::uuid[])", list(appointments)
        )
        states: dict[str, str] = {r["id"]: r["state"] for r in rows}
    finally:
        await connection.close()
    problems = [f"bill {r['id']} was accepted as paid and is {r['state']}" for r in unpaid]
    if known != len(bills):
        problems.append(f"{len(bills) - known} accepted bills are not in the database")
    problems += [f"refund {r['id']} was accepted and is {r['state']}" for r in unrefunded]
    for appointment, expected in appointments.items():
        found = states.get(appointment)
        # A hold whose payment was given up may expire; a confirmed or cancelled one must stay so.
        if expected == "HELD" and found in ("HELD", "EXPIRED", "CONFIRMED"):
            continue
        if found != expected:
            problems.append(f"appointment {appointment} was answered {expected} and is {found}")
    return problems


async def doubled(database_url: str, sandbox: httpx.AsyncClient, bank: httpx.AsyncClient) -> list[str]:
    """Effects applied twice: journals, channel charges, disbursements, messages, places."""
    connection = await asyncpg.connect(database_url)
    try:
        journals = await connection.fetch(
            "SELECT kind, reference, count(*) AS n FROM ledger_journal "
            "GROUP BY kind, reference HAVING count(*) > 1"
        )
        orders = await connection.fetch(
            "SELECT bill_id::text, method, out_trade_no FROM cash_payment "
            "WHERE method IN ('wechat', 'alipay')"
        )
        drawdowns = await connection.fetch("SELECT id::text, bill_id::text FROM credit_drawdown")
        delivered = {
            r["platform_msg_id"]
            for r in await connection.fetch(
                "SELECT platform_msg_id FROM notification WHERE platform_msg_id IS NOT NULL"
            )
        }
        unconfirmed = int(
            await connection.fetchval("SELECT count(*) FROM notification WHERE status = 'unconfirmed'")
        )
        overbooked = await connection.fetch(
            """
            SELECT s.id, s.capacity, s.booked, count(a.id) AS holding FROM booking_session s
            LEFT JOIN appointment a ON a.session_id = s.id
             AND a.state IN ('HELD', 'CONFIRMED', 'CHECKED_IN', 'NO_SHOW')
            GROUP BY s.id HAVING count(a.id) > s.capacity OR count(a.id) <> s.booked
            """
        )
    finally:
        await connection.close()
    problems = [f"journal {r['kind']} {r['reference']} posted {r['n']} times" for r in journals]
    charged: dict[str, int] = {}
    for order in orders:
        there = (await sandbox.get(f"/_sandbox/pay/{order['method']}/orders/{order['out_trade_no']}")).json()
        if there.get("state") in ("SUCCESS", "REFUND", "TRADE_SUCCESS", "TRADE_FINISHED"):
            charged[order["bill_id"]] = charged.get(order["bill_id"], 0) + 1
    problems += [f"bill {bill} charged {n} times at the channel" for bill, n in charged.items() if n > 1]
    books = (await bank.get("/_bank/books")).json()
    by_drawdown = {d["id"]: d["bill_id"] for d in drawdowns}
    disbursed: dict[str, int] = {}
    for there in books["drawdowns"]:
        if there["status"] != "FAILED":
            bill = by_drawdown.get(there["drawdown_id"], f"(unknown drawdown {there['drawdown_id']})")
            disbursed[bill] = disbursed.get(bill, 0) + 1
    problems += [f"bill {bill} disbursed {n} times by the bank" for bill, n in disbursed.items() if n > 1]
    messages = (await sandbox.get("/wechat/_sandbox/messages")).json()
    orphans = [msg for msg in messages if str(msg["msgid"]) not in delivered]
    # A message whose send was cut off is `unconfirmed`: it may have reached the platform once.
    if len(orphans) > unconfirmed:
        problems.append(
            f"{len(orphans)} messages at the platform match no delivered notification "
            f"(only {unconfirmed} sends were cut off)"
        )
    problems += [
        f"session {r['id']}: {r['holding']} appointments hold places, {r['booked']} counted, "
        f"capacity {r['capacity']}"
        for r in overbooked
    ]
    return problems


async def books_agree(sandbox: httpx.AsyncClient, bank: httpx.AsyncClient) -> list[str]:
    return await disagreements_with_the_channels(sandbox) + await disagreements_with_the_bank(bank)
