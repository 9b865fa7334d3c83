"""What billing sees of a payment channel (WeChat Pay, Alipay), whichever it is.

Money is in fen everywhere. A channel client verifies every answer and every notification it
hands out; what it cannot trust it refuses (`PARTNER_SIGNATURE_INVALID`, `NotificationInvalid`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

OrderState = Literal["PENDING", "PAID", "CLOSED", "FAILED", "NOT_FOUND"]
# ABNORMAL: the money left the merchant but could not reach the payer (WeChat Pay); it is paid
# out once the merchant settles it through the channel. FAILED: nothing was refunded.
RefundState = Literal["PROCESSING", "SUCCEEDED", "ABNORMAL", "FAILED", "NOT_FOUND"]
ChannelName = Literal["wechat", "alipay"]


@dataclass(frozen=True)
class Relative:
    """The patient a relative pays for (WeChat Pay's `pay_for_relatives`), as their document says."""

    name: str
    id_type: str
    id_number: str


@dataclass(frozen=True)
class OrderRequest:
    out_trade_no: str  # ours, unique per channel order, <= 32 chars [A-Za-z0-9_-]
    payer_id: str  # WeChat openid / Alipay buyer user id (the logged-in user's openid column)
    description: str  # e.g. "杭州市第一人民医院-门诊缴费"
    total_fen: int  # the whole bill
    cash_fen: int  # what this channel collects (> 0)
    fund_fen: int  # insurance fund part (already settled by us)
    personal_account_fen: int  # personal-account part (already settled by us)
    order_type: str  # REG | DIAG | PHARMACY | IN_HOSP
    institution_code: str
    institution_name: str
    notify_url: str
    expires_at: datetime  # tz-aware
    # Paid by the payer for a relative, not for themselves: the relative as `seal_relative` gave
    # them, once per order (an encrypted name differs every time it is made).
    relative: dict[str, Any] | None = None


@dataclass(frozen=True)
class OrderStatus:
    out_trade_no: str
    state: OrderState
    amount_fen: int | None = None  # cash amount the channel holds for the order
    transaction_id: str | None = None
    paid_at: datetime | None = None
    merchant_id: str | None = None  # WeChat mchid / Alipay app_id, for cross-checks


@dataclass(frozen=True)
class RefundStatus:
    out_refund_no: str
    state: RefundState
    refund_id: str | None = None
    amount_fen: int | None = None


@dataclass(frozen=True)
class ChannelEvent:
    """A verified notification. event_id is unique per event (WeChat `id`, Alipay `notify_id`).

    A channel sends the same event again until it is acknowledged: the same event_id each time.
    For a refund, amount_fen is what WeChat refunded in that refund; Alipay reports the total
    refunded on the trade so far (`refund_fee`): reconcile a refund by `query_refund`.
    """

    channel: ChannelName
    event_id: str
    kind: Literal["payment", "refund"]
    out_trade_no: str
    state: str  # payment: "PAID" | "CLOSED" | "FAILED"; refund: "SUCCEEDED" | "FAILED"
    amount_fen: int  # payment: amount paid; refund: amount refunded
    merchant_id: str
    transaction_id: str | None = None
    out_refund_no: str | None = None
    occurred_at: datetime | None = None
    # The decrypted / parsed notification content, for the inbox (JSON-able).
    payload: dict[str, Any] = field(default_factory=dict)


class NotificationInvalid(Exception):
    """Bad signature, stale timestamp, unknown serial, undecryptable, malformed: refuse it."""


@dataclass(frozen=True)
class Answer:
    """What our HTTP endpoint answers the channel."""

    status_code: int
    media_type: str
    body: bytes


class PaymentChannel(Protocol):
    name: ChannelName
    merchant_id: str

    async def create_order(self, order: OrderRequest) -> dict[str, str]:
        """What the mini-program needs to launch payment; the same order again is safe."""
        ...

    def seal_relative(self, relative: Relative) -> dict[str, Any] | None:
        """The relative as this channel's order names them (None: its orders do not)."""
        ...

    async def query_order(self, out_trade_no: str) -> OrderStatus: ...

    async def close_order(self, out_trade_no: str) -> OrderStatus:
        """Closes it if unpaid; if it was paid meanwhile, the PAID status (no error)."""
        ...

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
        notify_url: str,
    ) -> RefundStatus:
        """`total_fen` is the order's cash amount; the same out_refund_no again never refunds twice."""
        ...

    async def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundStatus: ...

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelEvent:
        """The event, or NotificationInvalid."""
        ...

    def acknowledge(self) -> Answer: ...

    def refuse(self, message: str) -> Answer: ...
