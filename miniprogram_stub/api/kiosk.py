"""A self-service kiosk (`kiosk:pay`): walk-in registration, and paying a visit's bills by face."""

from __future__ import annotations

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, idempotency, operation
from miniprogram_stub.api.bills import Id


class Kiosk:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("kioskSessionList")
    async def sessions(
        self, visit_token: str, *, after: str | None = None, limit: int | None = None
    ) -> m.WalkInSessionPage:
        params = {"visit_token": visit_token, "after": after, "limit": limit}
        return await self._c.call(m.WalkInSessionPage, "GET", "/api/v1/partner/kiosk/sessions", params=params)

    @operation("kioskAppointmentCreate")
    async def book(self, body: m.WalkInCreate, *, key: str | None = None) -> m.AppointmentRead:
        path = "/api/v1/partner/kiosk/appointments"
        return await self._c.call(m.AppointmentRead, "POST", path, body=body, headers=idempotency(key))

    @operation("kioskBills")
    async def bills(self, visit_token: str) -> m.KioskBills:
        """The visit's patient's unpaid bills at this institution, oldest first."""
        params = {"visit_token": visit_token}
        return await self._c.call(m.KioskBills, "GET", "/api/v1/partner/kiosk/bills", params=params)

    @operation("kioskPresettle")
    async def presettle(self, bill_id: Id, body: m.KioskPresettle) -> m.KioskPresettleRead:
        """The split, and `amount_fen`: what the face is to be taken for."""
        path = f"/api/v1/partner/kiosk/bills/{bill_id}/presettle"
        return await self._c.call(m.KioskPresettleRead, "POST", path, body=body)

    @operation("kioskPay")
    async def pay(self, bill_id: Id, body: m.KioskPay, *, key: str | None = None) -> m.FacePaymentRead:
        path = f"/api/v1/partner/kiosk/bills/{bill_id}/pay"
        return await self._c.call(m.FacePaymentRead, "POST", path, body=body, headers=idempotency(key))
