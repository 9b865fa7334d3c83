"""Institutions: registering them and looking them up. Other domains get an `Institution`."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from backend.hospitals import tables
from backend.platform.errors import Forbidden


class Institution(msgspec.Struct, frozen=True):
    """A hospital or pharmacy; its level (1-3) decides the fund's reimbursement ratio."""

    id: int
    code: str
    name: str
    level: int
    region_code: str


_COLUMNS = (
    tables.Institution.id,
    tables.Institution.code,
    tables.Institution.name,
    tables.Institution.level,
    tables.Institution.region_code,
)


async def ensure_institution(code: str, name: str, level: int, region_code: str) -> bool:
    """Register an institution unless its code exists; True when it was created."""
    rows = (
        await tables.Institution.insert(
            tables.Institution(
                code=code, name=name, level=level, region_code=region_code, created_at=datetime.now(UTC)
            )
        )
        .on_conflict(action="DO NOTHING")
        .returning(tables.Institution.id)
    )
    return bool(rows)


async def find(code: str) -> Institution | None:
    """The institution with this code, if there is one."""
    row = await tables.Institution.select(*_COLUMNS).where(tables.Institution.code == code).first()
    return None if row is None else Institution(**row)


async def of_partner(institution_code: str | None) -> Institution:
    """The institution a hospital's partner client is registered for; 403 `NO_INSTITUTION` if none."""
    institution = await find(institution_code) if institution_code else None
    if institution is None:
        raise Forbidden("this client is not registered for an institution", code="NO_INSTITUTION")
    return institution


async def get(institution_id: int) -> Institution:
    """An institution another domain's row refers to (a foreign key: it exists)."""
    row = await tables.Institution.select(*_COLUMNS).where(tables.Institution.id == institution_id).first()
    if row is None:
        raise LookupError(f"no institution {institution_id}")
    return Institution(**row)


async def named(institution_ids: set[int]) -> dict[int, Institution]:
    """Several institutions at once, by id (for lists)."""
    if not institution_ids:
        return {}
    rows = await tables.Institution.select(*_COLUMNS).where(
        tables.Institution.id.is_in(list(institution_ids))
    )
    return {row["id"]: Institution(**row) for row in rows}


async def search(*, region: str | None, text: str | None, after_id: int, limit: int) -> list[Institution]:
    """Institutions in a region (its code, or a prefix such as a province's "33"), by name,
    in id order after `after_id`."""
    query = tables.Institution.select(*_COLUMNS).where(tables.Institution.id > after_id)
    if region:
        while len(region) > 2 and region.endswith("00"):  # 330100 is Hangzhou, 330000 Zhejiang
            region = region[:-2]
        query = query.where(tables.Institution.region_code.like(region + "%"))
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(tables.Institution.name.ilike(f"%{escaped}%"))
    rows = await query.order_by(tables.Institution.id).limit(limit)
    return [Institution(**row) for row in rows]
