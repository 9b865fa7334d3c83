"""Institutions: registering them and looking them up."""

from datetime import UTC, datetime
from typing import Any

from backend.hospitals.tables import Institution


async def ensure_institution(code: str, name: str, level: int, region_code: str) -> bool:
    """Register an institution unless its code exists; True when it was created."""
    rows = (
        await Institution.insert(
            Institution(
                code=code, name=name, level=level, region_code=region_code, created_at=datetime.now(UTC)
            )
        )
        .on_conflict(action="DO NOTHING")
        .returning(Institution.id)
    )
    return bool(rows)


async def find(code: str) -> dict[str, Any] | None:
    """The institution with this code: id, code, name, level, region_code."""
    return (
        await Institution.select(
            Institution.id, Institution.code, Institution.name, Institution.level, Institution.region_code
        )
        .where(Institution.code == code)
        .first()
    )


async def find_by_id(institution_id: int) -> dict[str, Any]:
    row = (
        await Institution.select(
            Institution.id, Institution.code, Institution.name, Institution.level, Institution.region_code
        )
        .where(Institution.id == institution_id)
        .first()
    )
    if row is None:
        raise LookupError(f"no institution {institution_id}")
    return row
