"""The rows billing's use cases hand each other, typed: a bill and its cash payment, as read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from backend.billing.schemas import OrderType, Tender
from backend.billing.tables import Bill, BillState, CashPayment, CashState


class BillRecord(msgspec.Struct, frozen=True):
    """A bill row. The split (`fund_fen` ... `policy_year`) is set once payment starts."""

    id: uuid.UUID
    bill_no: str
    institution_id: int
    insured_id: int
    visit_id: int | None
    created_by: str
    request_key: str | None
    order_type: OrderType
    state: BillState
    total_fen: int
    fund_fen: int | None
    personal_account_fen: int | None
    family_account_fen: int
    family_insured_id: int | None
    family_link_id: int | None
    cash_fen: int | None
    deductible_fen: int | None
    policy_year: int | None
    settlement: str | None  # JSON: the choice paid with and the per-item split
    cash_method: str | None
    payer_user_id: int | None
    refunded_fen: int
    created_at: datetime
    expires_at: datetime
    paying_at: datetime | None
    paid_at: datetime | None
    ended_at: datetime | None
    ended_reason: str | None
    updated_at: datetime

    @property
    def settled(self) -> Settled:
        """What payment fixed when it started; a bill still CREATED (or closed unpaid) has none."""
        if self.policy_year is None or self.payer_user_id is None or self.settlement is None:
            raise ValueError(f"bill {self.id} is {self.state}: no payment has started")
        assert self.fund_fen is not None and self.personal_account_fen is not None
        assert self.cash_fen is not None and self.deductible_fen is not None
        return Settled(
            fund_fen=self.fund_fen,
            personal_account_fen=self.personal_account_fen,
            family_account_fen=self.family_account_fen,
            family_insured_id=self.family_insured_id,
            family_link_id=self.family_link_id,
            cash_fen=self.cash_fen,
            deductible_fen=self.deductible_fen,
            policy_year=self.policy_year,
            payer_user_id=self.payer_user_id,
            settlement=self.settlement,
        )


class Settled(msgspec.Struct, frozen=True):
    """A bill's split and who started paying it: set together when payment starts."""

    fund_fen: int
    personal_account_fen: int
    family_account_fen: int  # family mutual aid: paid by the personal account of
    family_insured_id: int | None  # this relative (the link's holder),
    family_link_id: int | None  # under this link
    cash_fen: int
    deductible_fen: int
    policy_year: int
    payer_user_id: int
    settlement: str


class CashRecord(msgspec.Struct, frozen=True):
    """A cash payment row: the cash part of a bill and who collects it (a channel's order, a bank's
    drawdown, the hospital's counter)."""

    id: int
    bill_id: uuid.UUID
    method: str
    out_trade_no: str
    amount_fen: int
    state: CashState
    launch: str | None  # JSON: what the mini-program launches the payment with
    transaction_id: str | None
    merchant_id: str | None
    account: str
    relative: str | None  # JSON: whom a relative pays for, as the channel's order names them
    receipt_no: str | None  # taken at the counter: the hospital's receipt,
    tender: Tender | None  # cash or card,
    recorded_by: str | None  # as its system recorded it
    created_at: datetime
    paid_at: datetime | None
    ended_at: datetime | None


def as_bill(row: dict[str, Any]) -> BillRecord:
    return msgspec.convert(row, BillRecord)


def as_cash(row: dict[str, Any]) -> CashRecord:
    return msgspec.convert(row, CashRecord)


async def bill(bill_id: uuid.UUID) -> BillRecord | None:
    row = await Bill.select().where(Bill.id == bill_id).first()
    return None if row is None else as_bill(row)


async def cash_of(bill_id: uuid.UUID) -> CashRecord | None:
    """The bill's latest cash part: the live one, or the last that failed."""
    row = (
        await CashPayment.select()
        .where(CashPayment.bill_id == bill_id)
        .order_by(CashPayment.id, ascending=False)
        .first()
    )
    return None if row is None else as_cash(row)
