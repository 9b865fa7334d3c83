"""A relative's QR code on the holder's phone: issued while the holder's live link grants `manage`,
and checked again when a terminal decodes it (`ecert.check_links_with`, registered by the app)."""

from __future__ import annotations

from backend.auth.service import Patient
from backend.ecert import service as ecert
from backend.ecert.schemas import QrCodeRead
from backend.family import service
from backend.platform.errors import NotFound
from backend.platform.runtime import Runtime


async def issue(rt: Runtime, patient: Patient, link_id: int) -> QrCodeRead:
    """A fresh single-use code of the relative; it voids the relative's older codes."""
    relative_id = await service.managed_relative(patient.user_id, link_id)
    if relative_id is None:
        raise NotFound("no such link that lets you manage the relative", code="FAMILY_LINK_NOT_FOUND")
    return await ecert.issue_relative_qr(rt, relative_id, patient.user_id, link_id)
