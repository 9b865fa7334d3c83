"""Cash methods: how the cash part of a bill is collected and given back.

Each method is a `CashMethod`: it reserves what it needs inside the transaction that settles the
bill (a credit line's limit), opens the collection after commit (a channel order, a bank's
disbursement, a note to pay at the counter), checks a collection that has not ended, and refunds.
The payment channels are registered by `by_channel.py`, the hospital's counter by `counter.py`; the
credit domain registers "credit" (`backend/credit/method.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from backend.auth.service import Patient
from backend.billing.records import BillRecord, CashRecord
from backend.billing.tables import CashPayment
from backend.partners.channels import RefundStatus
from backend.platform.runtime import Runtime


@dataclass(frozen=True)
class Reserved:
    """What a method fixed for a cash part as the bill settled: who collects it, into which account."""

    merchant_id: str  # the channel's merchant, the bank's code, or the institution's (the counter)
    account: str  # the ledger account the cash arrives through (channel or bank clearing, cash desk)


@dataclass(frozen=True)
class RefundOrder:
    refund_id: str
    out_refund_no: str
    cash_fen: int
    reason: str


@dataclass(frozen=True)
class CashMethod:
    # Inside the settling transaction, the bill locked: refuse (AppError) or reserve. Arguments:
    # the payer, the bill, the method's name, the cash part (fen) and its out_trade_no.
    reserve: Callable[[Runtime, Patient, BillRecord, str, int, str], Awaitable[Reserved]]
    # After commit: what the mini-program launches the payment with (repeats answer the same).
    open: Callable[[Runtime, BillRecord, CashRecord], Awaitable[dict[str, str]]]
    # A collection still open: ask its collector and complete or end it. Returns what happened.
    check: Callable[[Runtime, BillRecord, CashRecord, bool], Awaitable[str]]
    # Give cash back; the same out_refund_no again never refunds twice.
    refund: Callable[[Runtime, CashRecord, RefundOrder], Awaitable[RefundStatus]]
    query_refund: Callable[[Runtime, CashRecord, RefundOrder], Awaitable[RefundStatus]]


METHODS: dict[str, CashMethod] = {}


def register(name: str, method: CashMethod) -> None:
    METHODS[name] = method


def method(name: str) -> CashMethod:
    return METHODS[name]


def notify_url(rt: Runtime, channel: str) -> str:
    """Where a payment channel posts its notifications."""
    return f"{rt.settings.app.base_url}/api/v1/payments/notify/{channel}"


async def store_launch(cash: CashRecord, launch: dict[str, str]) -> dict[str, str]:
    """Requests racing to open one collection each get an answer: the first one stored is the
    launch every request of this payment answers with, now and later."""
    stored = (
        await CashPayment.update({CashPayment.launch: launch})
        .where((CashPayment.id == cash.id) & CashPayment.launch.is_null())
        .returning(CashPayment.id)
    )
    if stored:
        return launch
    first = await CashPayment.select(CashPayment.launch).where(CashPayment.id == cash.id).first()
    assert first is not None
    return dict(msgspec.json.decode(first["launch"]))
