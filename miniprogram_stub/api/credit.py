"""Credit lines: products, applications with consent, repayment at the bank; the banks' callbacks."""

from __future__ import annotations

from collections.abc import Mapping

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, idempotency, operation


class Credit:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("creditGet")
    async def get(self) -> m.CreditRead:
        """The patient's lines, each with its drawdowns, and the products on offer."""
        return await self._c.call(m.CreditRead, "GET", "/api/v1/credit")

    @operation("creditProducts")
    async def products(self) -> list[m.ProductRead]:
        return await self._c.call(list[m.ProductRead], "GET", "/api/v1/credit/products")

    @operation("creditApply")
    async def apply(self, body: m.ApplicationCreate, *, key: str | None = None) -> m.LineRead:
        """`APPLIED`: the bank decides, by callback."""
        path = "/api/v1/credit/applications"
        return await self._c.call(m.LineRead, "POST", path, body=body, headers=idempotency(key))

    @operation("creditRepay")
    async def repay(self, body: m.RepaymentCreate, *, key: str | None = None) -> m.RepaymentRead:
        """A repayment with the bank's `cashier_url`, where the patient pays the bank."""
        path = "/api/v1/credit/repayments"
        return await self._c.call(m.RepaymentRead, "POST", path, body=body, headers=idempotency(key))

    @operation("bankCallback")
    async def bank_callback(self, bank_code: str, content: bytes, headers: Mapping[str, str]) -> None:
        """A bank's signed event (Standard Webhooks `v1a` headers), as the bank sends it."""
        headers = {"Content-Type": "application/json", **headers}
        await self._c.send("POST", f"/api/v1/callbacks/banks/{bank_code}", content=content, headers=headers)
