"""What a bill pays for, told when the bill is paid or ends unpaid.

Bills a hospital's system creates pay for what it already gave. Bills another domain creates
(booking's registration fee) pay for something that domain holds: it registers an `Order` under
its creator name, and billing calls it inside the transaction that pays or ends the bill, the bill
locked, so the thing and its bill never disagree (a place paid for at the last moment is kept).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backend.billing.records import BillRecord
from backend.platform.runtime import Runtime

DOMAIN = "domain:"  # how a domain's bills name their creator, e.g. "domain:booking"


@dataclass(frozen=True)
class Order:
    # Both run inside billing's transaction and return outbox message ids to send after commit.
    paid: Callable[[Runtime, BillRecord], Awaitable[list[int]]]
    ended: Callable[[Runtime, BillRecord, str], Awaitable[list[int]]]  # closed or failed; the reason
    # Before a payment locks anything else (a family link, the usage, the accounts): the rows
    # `paid` will change, so paying takes its locks in the order cancelling and expiring do.
    lock: Callable[[BillRecord], Awaitable[None]]


ORDERS: dict[str, Order] = {}


def register(domain: str, order: Order) -> str:
    """Register a domain's order; returns the creator name its bills carry."""
    ORDERS[DOMAIN + domain] = order
    return DOMAIN + domain


def _order(bill: BillRecord) -> Order | None:
    if not bill.created_by.startswith(DOMAIN):
        return None  # a hospital's bill
    order = ORDERS.get(bill.created_by)
    if order is None:  # a process that pays bills without the domain that made them: refuse loudly
        raise RuntimeError(f"bill {bill.id} was created by {bill.created_by}, which is not loaded")
    return order


async def lock(bill: BillRecord) -> None:
    order = _order(bill)
    if order is not None:
        await order.lock(bill)


async def paid(rt: Runtime, bill: BillRecord) -> list[int]:
    order = _order(bill)
    return [] if order is None else await order.paid(rt, bill)


async def ended(rt: Runtime, bill: BillRecord, reason: str) -> list[int]:
    order = _order(bill)
    return [] if order is None else await order.ended(rt, bill, reason)
