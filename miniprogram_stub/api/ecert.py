"""The e-certificate: binding, QR codes; terminals and kiosks turning a code or a face into a visit."""

from __future__ import annotations

from typing import Literal

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, operation

Image = Literal["svg", "png"]


class Ecert:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("ecertBind")
    async def bind(self, body: m.BindRequest) -> m.EcertRead:
        return await self._c.call(m.EcertRead, "POST", "/api/v1/ecert/bind", body=body)

    @operation("ecertGet")
    async def get(self) -> m.EcertRead:
        return await self._c.call(m.EcertRead, "GET", "/api/v1/ecert")

    @operation("ecertUnbind")
    async def unbind(self) -> None:
        await self._c.send("DELETE", "/api/v1/ecert")

    @operation("ecertQrCode")
    async def qrcode(self) -> m.QrCodeRead:
        """A fresh code, single use, valid a minute: `payload` is what the terminal scans."""
        return await self._c.call(m.QrCodeRead, "GET", "/api/v1/ecert/qrcode", params={"format": "json"})

    @operation("ecertQrCode")
    async def qrcode_image(self, format: Image = "svg") -> bytes:
        return (await self._c.send("GET", "/api/v1/ecert/qrcode", params={"format": format})).content

    @operation("ecertDecode")
    async def decode(self, qr: str) -> m.VisitOpened:
        """A terminal (`ecert:decode`) scans the patient's code: a visit at its institution."""
        body = m.DecodeRequest(qr=qr)
        return await self._c.call(m.VisitOpened, "POST", "/api/v1/partner/ecert/decode", body=body)

    @operation("ecertFace")
    async def face(self, face_assertion: str) -> m.VisitOpened:
        body = m.FaceRequest(face_assertion=face_assertion)
        return await self._c.call(m.VisitOpened, "POST", "/api/v1/partner/ecert/face", body=body)

    @operation("visitLookup")
    async def lookup_visit(self, visit_token: str) -> m.VisitRead:
        body = m.VisitLookup(visit_token=visit_token)
        return await self._c.call(m.VisitRead, "POST", "/api/v1/partner/visits/lookup", body=body)
