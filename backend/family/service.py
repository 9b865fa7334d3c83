"""Family's face for other domains: whom a user may act for. Their own e-certificate, and each
relative whose live link grants the holder `manage` (a relative in their care, or one who gave it).
A link's holder is a person, not an account: the user acts as holder only while the holder's
e-certificate is bound to them, so an account unbound or bound by someone else inherits nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


async def may_act_for(user_id: int, insured_id: int) -> bool | None:
    """`in_care_of` for one person, in one statement: True when they are the user's own, False
    when a relative in their care, None when neither. (It reads e-certificate bindings beside the
    links, the rule `ecert.insured_of_user` keeps: a live binding.)"""
    rows = await FamilyLink.raw(
        """
        SELECT EXISTS (
                 SELECT FROM ecert_binding
                 WHERE user_id = {} AND insured_id = {} AND unbound_at IS NULL
               ) AS own,
               EXISTS (
                 SELECT FROM family_link l
                 JOIN ecert_binding b ON b.insured_id = l.holder_id AND b.unbound_at IS NULL
                 WHERE b.user_id = {} AND l.relative_id = {} AND l.state = {} AND l.grant_manage
               ) AS managed
        """,
        user_id,
        insured_id,
        user_id,
        insured_id,
        LinkState.ACTIVE.value,
    )
    if rows[0]["own"]:
        return True
    return False if rows[0]["managed"] else None


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


_ACTING = """
    SELECT id, version, holder_id, relative_id, grant_pay, credit_cap_fen, grant_kiosk FROM family_link
    WHERE holder_id = ANY({}::int[]) AND relative_id = {} AND state = 'ACTIVE' AND grant_manage
"""
_LOCKED_ACTING = _ACTING + " FOR NO KEY UPDATE"


@dataclass(frozen=True)
class Acting:
    """The live link under which a user acts for a relative, with what its holder gives."""

    link_id: int
    version: int  # of the link's grants, which what is done under it records
    holder_id: int  # the holder's insured person: whose personal account and credit line
    relative_id: int
    pay: bool  # family mutual aid from the holder's personal account
    credit_cap_fen: int | None  # the holder's credit line, up to this much a month
    kiosk: bool  # `pay` and `credit` also by the relative's face at a kiosk


def _acting(row: dict[str, Any]) -> Acting:
    return Acting(
        link_id=row["id"],
        version=row["version"],
        holder_id=row["holder_id"],
        relative_id=row["relative_id"],
        pay=row["grant_pay"],
        credit_cap_fen=row["credit_cap_fen"],
        kiosk=row["grant_kiosk"],
    )


async def acting_for(user_id: int, relative_id: int, *, lock: bool = True) -> Acting | None:
    """This user's live link to the relative that grants `manage`; with `lock`, inside the
    caller's transaction, locked until the caller commits, so that ending the link or changing its
    grants waits for a payment made under it, and a payment after that sees the change. None: there
    is no such link (the relative's objects are then anyone else's)."""
    own = await ecert.insured_of_user(user_id)
    if not own:
        return None
    rows = await FamilyLink.raw(_LOCKED_ACTING if lock else _ACTING, own, relative_id)
    return _acting(rows[0]) if rows else None


async def holders_of(relative_id: int) -> list[tuple[int, Acting]]:
    """Who may act for this relative: for each live link granting `manage`, in the order they were
    made, the account its holder's e-certificate is bound to (the one bound first), and what the
    link gives."""
    rows = await FamilyLink.raw(
        """
        SELECT l.id, l.version, l.holder_id, l.relative_id, l.grant_pay, l.credit_cap_fen, l.grant_kiosk
        FROM family_link l WHERE l.relative_id = {} AND l.state = 'ACTIVE' AND l.grant_manage ORDER BY l.id
        """,
        relative_id,
    )
    found = []
    for row in rows:
        if (user := await ecert.bound_user(row["holder_id"])) is not None:
            found.append((user, _acting(row)))
    return found
