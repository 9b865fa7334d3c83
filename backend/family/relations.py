"""Which relations a holder may link, by their pooling region's policy, and how each reads from
the other side."""

from __future__ import annotations

from backend.family.tables import Relation
from backend.platform.errors import AppError

NEAR = {Relation.SPOUSE, Relation.PARENT, Relation.CHILD}  # everywhere
EXTENDED = {Relation.SIBLING, Relation.GRANDPARENT, Relation.GRANDCHILD}  # where the policy says so

BACK = {
    Relation.SPOUSE: Relation.SPOUSE,
    Relation.PARENT: Relation.CHILD,
    Relation.CHILD: Relation.PARENT,
    Relation.SIBLING: Relation.SIBLING,
    Relation.GRANDPARENT: Relation.GRANDCHILD,
    Relation.GRANDCHILD: Relation.GRANDPARENT,
}


def allowed(pooling_region: str, extended_regions: str) -> set[Relation]:
    regions = {r.strip() for r in extended_regions.split(",") if r.strip()}
    return NEAR | EXTENDED if pooling_region in regions else set(NEAR)


def check(relation: str, pooling_region: str, extended_regions: str) -> Relation:
    """The relation, if the holder's region links it; 422 on `relation` otherwise."""
    if relation not in allowed(pooling_region, extended_regions):
        raise AppError(
            f"{relation} is not a relation your region's policy links (spouse, parents and children"
            + (
                ")"
                if relation not in EXTENDED
                else "; it adds siblings and grandparents only in some regions)"
            ),
            code="RELATION_NOT_ALLOWED",
            status_code=422,
            detail={"field": "relation"},
        )
    return Relation(relation)
