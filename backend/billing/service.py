"""Billing's face for domains that sell something through a bill (booking's registration fee):
a bill created inside their transaction, locked, closed unpaid, refunded; and `orders.register`
for hearing when it is paid or ends."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from backend.billing import bills, cash, policy, refunds
from backend.billing.parties import locked_bill
from backend.billing.records import BillRecord
from backend.billing.schemas import Category, OrderType
from backend.billing.tables import Bill, BillItem, BillState
from backend.platform.runtime import Runtime

__all__ = ["BillRecord", "BillState", "Line", "close_within", "create_within", "locked", "refund_within"]


@dataclass(frozen=True)
class Line:
    """One item of a bill a domain creates."""

    code: str
    name: str
    category: Category
    unit_price_fen: int
    quantity: int = 1


async def create_within(
    *,
    creator: str,
    institution_id: int,
    insured_id: int,
    order_type: OrderType,
    lines: list[Line],
    expires_at: datetime,
    request_key: str | None = None,
) -> uuid.UUID:
    """A CREATED bill, inside the caller's transaction; `schedule_expiry` after commit (the sweeper
    closes it at expiry if that is lost). Its number derives from its id: never a clash. Under a
    `request_key` (unique per creator), `created_under` finds it again for a retried request."""
    bill_id, now = uuid.uuid4(), datetime.now(UTC)
    await Bill.insert(
        Bill(
            id=bill_id,
            bill_no=f"R{bill_id.hex[:31]}".upper(),
            institution_id=institution_id,
            insured_id=insured_id,
            created_by=creator,
            request_key=request_key,
            order_type=order_type,
            state=BillState.CREATED,
            total_fen=sum(line.quantity * line.unit_price_fen for line in lines),
            created_at=now,
            expires_at=expires_at,
            updated_at=now,
        )
    )
    await BillItem.insert(
        *(
            BillItem(
                bill_id=bill_id,
                line_no=n,
                code=line.code,
                name=line.name,
                category=line.category,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                amount_fen=line.quantity * line.unit_price_fen,
            )
            for n, line in enumerate(lines, start=1)
        )
    )
    return bill_id


async def created_under(creator: str, request_key: str) -> uuid.UUID | None:
    row = (
        await Bill.select(Bill.id)
        .where((Bill.created_by == creator) & (Bill.request_key == request_key))
        .first()
    )
    return None if row is None else row["id"]


async def schedule_expiry(rt: Runtime, bill_id: uuid.UUID, at: datetime) -> None:
    await bills.schedule_expiry(rt, bill_id, at)


async def locked(bill_id: uuid.UUID) -> BillRecord:
    """The bill, locked until the caller's transaction ends: lock it before what it pays for."""
    return await locked_bill(bill_id)


async def close_within(rt: Runtime, bill: BillRecord, reason: str) -> list[int]:
    """Close a locked CREATED bill (nothing was settled); outbox ids to send after commit."""
    assert bill.state == BillState.CREATED
    return await cash.end_within(rt, bill, BillState.CLOSED, reason)


async def refund_within(bill: BillRecord, reason: str, requested_by: str) -> tuple[uuid.UUID, int, list[int]]:
    """Refund what is left of a locked paid bill: (refund id, its cash part, outbox ids). When
    there is cash, `send_refund` after commit (the sweeper asks again if that is lost)."""
    return await refunds.record_within(bill, None, reason, requested_by, None)


async def send_refund(rt: Runtime, refund_id: uuid.UUID) -> str:
    return await refunds.send(rt, refund_id)


def pooling_region(region_code: str) -> str:
    """The region whose insurance policy a person follows (their city's)."""
    return policy.pooling_region(region_code)


def pay_url(rt: Runtime, bill_id: uuid.UUID) -> str:
    return bills.pay_url(rt, bill_id)
