"""A newborn added by a parent: the e-certificate platform enrols the baby in resident insurance on
the parent's word (their own e-certificate bound), and the baby is the parent's CHILD in their care."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from backend.auth.service import Patient
from backend.ecert import service as ecert
from backend.family import links
from backend.family.schemas import LinkRead, NewbornCreate
from backend.family.tables import FamilyLink, LinkedBy, LinkState, Relation
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def add_newborn(rt: Runtime, patient: Patient, request: NewbornCreate) -> tuple[LinkRead, bool]:
    """The link to the newborn, and whether it is new: the same birth certificate again answers the
    parent's live link to the baby; the other parent gets a link of their own to the same baby."""
    holder = await links._own(patient)
    number = ecert.checked_birth_certificate(request.birth_certificate_no)
    if request.birth_date > datetime.now(UTC).astimezone(links.CHINA).date():
        raise AppError(
            "birth_date: a newborn's birth date is not in the future",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "birth_date"},
        )
    known = await ecert.newborn_known(rt, number)
    if known is None or await _live_link(holder.id, known) is None:
        await links._check_room(rt, holder.id)  # before the platform is asked; again under the lock
    await links._proxy_budget(rt, patient.user_id)
    identity = await ecert.enrol_newborn(
        rt, patient.user_id, holder.id, number, request.name, request.birth_date
    )
    try:
        async with DB.transaction():
            baby_id = await ecert.remember(rt, identity)
            existing = await _live_link(holder.id, baby_id)
            # In the parent's care from the start (`manage`), as a relative added by proxy is.
            link_id = existing or await links._link(
                rt, holder.id, patient.user_id, baby_id, Relation.CHILD, LinkedBy.NEWBORN
            )
            created = existing is None
    except Conflict as exc:
        # The same request sent twice at once: the other one linked the baby first.
        existing = await _live_link(holder.id, baby_id) if exc.code == "FAMILY_LINK_EXISTS" else None
        if existing is None:
            raise
        link_id, created = existing, False
    if created:
        log.info("newborn linked", link_id=link_id)
    return await links._read(link_id, patient), created


async def _live_link(holder_id: int, relative_id: int) -> int | None:
    row = (
        await FamilyLink.select(FamilyLink.id)
        .where(
            (FamilyLink.holder_id == holder_id)
            & (FamilyLink.relative_id == relative_id)
            & (FamilyLink.state == LinkState.ACTIVE)
        )
        .first()
    )
    return None if row is None else int(row["id"])
