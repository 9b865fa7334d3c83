"""Our books against the partners' own: the sandbox channels' orders and refunds, the sandbox
bank's lines and drawdowns. Each function lists the disagreements it finds (none: the books agree);
the money tests call them after every test, `./run soak` after its run."""

from __future__ import annotations

from typing import Any

import httpx

from backend.billing.parties import CHANNELS
from backend.billing.tables import CashPayment, Refund
from backend.credit.tables import CreditLine, Drawdown


async def disagreements_with_the_channels(sandbox: httpx.AsyncClient) -> list[str]:
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


async def disagreements_with_the_bank(bank: httpx.AsyncClient) -> list[str]:
    """Our lines and drawdowns against the bank's: limits, what was disbursed, owed, repaid, refunded."""
    books: dict[str, Any] = (await bank.get("/_bank/books")).json()
    theirs = {d["drawdown_id"]: d for d in books["drawdowns"]}
    lines = {line["application_id"]: line for line in books["lines"]}
    problems = []
    for line in await CreditLine.select():
        there = lines.get(str(line["id"]))
        if line["status"] in ("ACTIVE", "FROZEN") and (
            there is None or there["limit_fen"] != line["limit_fen"]
        ):
            problems.append(f"line {line['id']}: ours {line['limit_fen']} fen, the bank's {there}")
    ours_by_id = {str(d["id"]): d for d in await Drawdown.select()}
    for drawdown_id, there in theirs.items():
        if there["status"] != "FAILED" and ours_by_id.get(drawdown_id, {}).get("status") not in (
            "DISBURSED",
            "REPAID",
        ):
            problems.append(
                f"the bank disbursed drawdown {drawdown_id}; ours is {ours_by_id.get(drawdown_id)}"
            )
    for ours in ours_by_id.values():
        there = theirs.get(str(ours["id"]))
        if ours["status"] in ("DISBURSED", "REPAID"):
            if there is None:
                problems.append(f"drawdown {ours['id']} is {ours['status']} here, unknown at the bank")
                continue
            mine = (ours["amount_fen"], ours["principal_fen"], ours["repaid_fen"], ours["refunded_fen"])
            bank_side = (
                there["amount_fen"],
                there["principal_outstanding_fen"],
                there["repaid_fen"],
                there["reduced_by_refunds_fen"],
            )
            if mine != bank_side:
                problems.append(f"drawdown {ours['id']}: ours {mine}, the bank's {bank_side}")
        elif ours["status"] == "FAILED" and there is not None and there["status"] == "DISBURSED":
            problems.append(f"drawdown {ours['id']} failed here but the bank disbursed it")
        elif ours["status"] == "RESERVED":
            problems.append(
                f"drawdown {ours['id']} is still RESERVED (the bank: {there and there['status']})"
            )
    return problems
