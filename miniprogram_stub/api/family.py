"""Family: relatives linked by invitation, proxy or as newborns, and the grants on each link."""

from __future__ import annotations

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, operation
from miniprogram_stub.api.ecert import Image


class Family:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("familyGet")
    async def get(self) -> m.FamilyRead:
        """The relatives the patient looks after, and those who look after them."""
        return await self._c.call(m.FamilyRead, "GET", "/api/v1/family")

    @operation("familyInvite")
    async def invite(self, body: m.InvitationCreate) -> m.InvitationRead:
        """A one-time code (and its QR code) for the relative to accept from their own account."""
        return await self._c.call(m.InvitationRead, "POST", "/api/v1/family/invitations", body=body)

    @operation("familyAccept")
    async def accept(self, body: m.InvitationAccept) -> m.LinkRead:
        """The relative, from their own account, accepts an invitation's code."""
        return await self._c.call(m.LinkRead, "POST", "/api/v1/family/invitations/accept", body=body)

    @operation("familyAddRelative")
    async def add_relative(self, body: m.RelativeCreate) -> m.LinkRead:
        """A relative without a phone, in the holder's care (the e-certificate platform verifies)."""
        return await self._c.call(m.LinkRead, "POST", "/api/v1/family/relatives", body=body)

    @operation("familyAddNewborn")
    async def add_newborn(self, body: m.NewbornCreate) -> m.LinkRead:
        return await self._c.call(m.LinkRead, "POST", "/api/v1/family/newborns", body=body)

    @operation("familyEndLink")
    async def end_link(self, link_id: int) -> m.LinkRead:
        return await self._c.call(m.LinkRead, "POST", f"/api/v1/family/links/{link_id}/end")

    @operation("familyGrants")
    async def set_grants(self, link_id: int, body: m.GrantsUpdate) -> m.LinkRead:
        return await self._c.call(m.LinkRead, "PUT", f"/api/v1/family/links/{link_id}/grants", body=body)

    @operation("familyRelativeQrCode")
    async def relative_qrcode(self, link_id: int) -> m.QrCodeRead:
        """A fresh code of the relative's, while the link grants `manage`."""
        path = f"/api/v1/family/links/{link_id}/qrcode"
        return await self._c.call(m.QrCodeRead, "GET", path, params={"format": "json"})

    @operation("familyRelativeQrCode")
    async def relative_qrcode_image(self, link_id: int, format: Image = "svg") -> bytes:
        path = f"/api/v1/family/links/{link_id}/qrcode"
        return (await self._c.send("GET", path, params={"format": format})).content
