"""Bills: a hospital's system creates and refunds them; the patient pre-settles and pays them; the
payment channels notify (raw bodies, signed in the channels' own terms)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal
from uuid import UUID

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, idempotency, operation

Id = UUID | str


class Bills:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    # The patient's (or a holder's managing the relative's bills).

    @operation("billList")
    async def list(self, *, limit: int | None = None, before: datetime | None = None) -> m.BillPage:
        params = {"limit": limit, "before": before}
        return await self._c.call(m.BillPage, "GET", "/api/v1/bills", params=params)

    @operation("billGet")
    async def get(self, bill_id: Id) -> m.BillRead:
        return await self._c.call(m.BillRead, "GET", f"/api/v1/bills/{bill_id}")

    @operation("billPresettle")
    async def presettle(self, bill_id: Id, body: m.PresettleRequest | None = None) -> m.PresettleRead:
        """The split into fund, personal account, family account and cash; nothing is written."""
        path = f"/api/v1/bills/{bill_id}/presettle"
        return await self._c.call(m.PresettleRead, "POST", path, body=body or m.PresettleRequest())

    @operation("billPay")
    async def pay(self, bill_id: Id, body: m.PayRequest, *, key: str | None = None) -> m.PaymentRead:
        """`PAID`, or `PAYING` with the channel's `launch` (by credit: the bank is disbursing)."""
        path = f"/api/v1/bills/{bill_id}/pay"
        return await self._c.call(m.PaymentRead, "POST", path, body=body, headers=idempotency(key))

    # The hospital's system (`bills:write`).

    @operation("partnerBillCreate")
    async def create(self, body: m.BillCreate, *, key: str | None = None) -> m.BillRead:
        return await self._c.call(
            m.BillRead, "POST", "/api/v1/partner/bills", body=body, headers=idempotency(key)
        )

    @operation("partnerBillGet")
    async def partner_get(self, bill_id: Id) -> m.BillRead:
        return await self._c.call(m.BillRead, "GET", f"/api/v1/partner/bills/{bill_id}")

    @operation("partnerBillQrCode")
    async def pay_code(self, bill_id: Id, format: Literal["svg", "png"] = "svg") -> bytes:
        """The bill's pay code (it holds `pay_url`), as an image."""
        path = f"/api/v1/partner/bills/{bill_id}/qrcode"
        return (await self._c.send("GET", path, params={"format": format})).content

    @operation("partnerBillRefund")
    async def refund(self, bill_id: Id, body: m.RefundCreate, *, key: str | None = None) -> m.RefundRead:
        path = f"/api/v1/partner/bills/{bill_id}/refunds"
        return await self._c.call(m.RefundRead, "POST", path, body=body, headers=idempotency(key))

    @operation("partnerBillCounterPayment")
    async def counter_payment(
        self, bill_id: Id, body: m.CounterPaymentCreate, *, key: str | None = None
    ) -> m.CounterPaymentRead:
        path = f"/api/v1/partner/bills/{bill_id}/counter-payment"
        return await self._c.call(m.CounterPaymentRead, "POST", path, body=body, headers=idempotency(key))


class Payments:
    """What WeChat Pay and Alipay post: bodies and headers as the channel signed them."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("paymentNotifyWechat")
    async def notify_wechat(self, content: bytes, headers: Mapping[str, str]) -> None:
        """A refusal is `ApiError` with WeChat Pay's own `code` (`FAIL`)."""
        await self._c.send("POST", "/api/v1/payments/notify/wechat", content=content, headers=headers)

    @operation("paymentNotifyAlipay")
    async def notify_alipay(self, content: bytes) -> str:
        """Alipay's form body; the answer is Alipay's word, `success` or `fail`."""
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        return (
            await self._c.send("POST", "/api/v1/payments/notify/alipay", content=content, headers=form)
        ).text
