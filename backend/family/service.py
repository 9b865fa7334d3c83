"""Family's face for other domains: whom a user may act for. Their own e-certificate, and each
relative whose live link grants the holder `manage` (a relative in their care, or one who gave it).
A link's holder is a person, not an account: the user acts as holder only while the holder's
e-certificate is bound to them, so an account unbound or bound by someone else inherits nothing."""

from __future__ import annotations

from backend.ecert import service as ecert
from backend.family.tables import FamilyLink, LinkState


async def in_care_of(user_id: int) -> list[int]:
    """The insured people whose bills and appointments this user may see and act on: their own
    first, then every relative whose live link grants them `manage`. An ended link opens nothing."""
    own = await ecert.insured_of_user(user_id)
    if not own:
        return []
    rows = await FamilyLink.select(FamilyLink.relative_id).where(
        FamilyLink.holder_id.is_in(own)
        & (FamilyLink.state == LinkState.ACTIVE)
        & (FamilyLink.grant_manage == True)  # noqa: E712  # Piccolo builds SQL from the comparison
    )
    return own + [int(r["relative_id"]) for r in rows if r["relative_id"] not in own]


async def managed_relative(user_id: int, link_id: int) -> int | None:
    """The relative of this user's live link that grants `manage`, if it is one."""
    own = await ecert.insured_of_user(user_id)
    if not own:
        return None
    row = (
        await FamilyLink.select(FamilyLink.relative_id)
        .where(
            (FamilyLink.id == link_id)
            & FamilyLink.holder_id.is_in(own)
            & (FamilyLink.state == LinkState.ACTIVE)
            & (FamilyLink.grant_manage == True)  # noqa: E712
        )
        .first()
    )
    return None if row is None else int(row["relative_id"])
