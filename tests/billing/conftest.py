"""Money tests: demo institutions and policies in place; the books audited after every test,
and checked against what the sandbox channels hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.audit import full_audit
from backend.billing.parties import CHANNELS
from backend.billing.tables import CashPayment, Refund
from backend.seed import seed


@pytest.fixture(autouse=True)
async def audited_books(
    request: pytest.FixtureRequest, clean_slate: None, sandbox_http: httpx.AsyncClient
) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    if request.node.get_closest_marker("channel_differs") is None:
        problems += await _disagreements_with_the_channels(sandbox_http)
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)


async def _disagreements_with_the_channels(sandbox: httpx.AsyncClient) -> list[str]:
    """Our cash payments and refunds against what the sandbox channels hold: paid and given back
    (the cash parts a channel collected: the counter's are the hospital's own books)."""
    problems = []
    for cash in await CashPayment.select().where(CashPayment.method.is_in(list(CHANNELS))):
        order = (await sandbox.get(f"/_sandbox/pay/{cash['method']}/orders/{cash['out_trade_no']}")).json()
        paid_there = order.get("state") in ("SUCCESS", "REFUND", "TRADE_SUCCESS", "TRADE_FINISHED") or (
            order.get("state") == "TRADE_CLOSED" and order.get("refunded_fen", 0) > 0
        )
        # CREATED while the channel has the money is a payment in flight: the order query ends it.
        if (cash["state"] == "PAID" and not paid_there) or (
            cash["state"] in ("CLOSED", "FAILED") and paid_there
        ):
            problems.append(
                f"{cash['out_trade_no']}: ours {cash['state']}, the channel's {order.get('state')}"
            )
        given_back = await Refund.raw(
            "SELECT coalesce(sum(cash_fen), 0) AS total FROM bill_refund "
            "WHERE bill_id = {} AND state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION')",
            cash["bill_id"],
        )
        if paid_there and given_back[0]["total"] != order.get("refunded_fen", 0):
            problems.append(
                f"{cash['out_trade_no']}: we gave back {given_back[0]['total']} fen, "
                f"the channel {order.get('refunded_fen')}"
            )
    return problems
