"""`medpay audit`: every domain's money invariants, read in one snapshot."""

from __future__ import annotations

from backend.billing import audit as billing
from backend.credit import audit as credit
from backend.ledger import service as ledger
from backend.piccolo_conf import DB


async def full_audit() -> tuple[list[str], dict[str, int]]:
    """The ledger's invariants, the bills' and credit's: (problems, what was checked). Every check
    reads one snapshot, so payments completing meanwhile are never half seen."""
    async with DB.transaction():
        await DB.run_ddl("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        problems, counts = await ledger.audit()
        for domain in (billing, credit):
            found, checked = await domain.audit()
            problems += found
            counts.update(checked)
    return problems, counts
