"""The e-certificate's background work: purging spent QR codes and face-assertion ids."""

from __future__ import annotations

from backend.ecert import visits
from backend.platform.runtime import Runtime
from backend.platform.work import Cron


async def purge_ecert_codes(_: Runtime) -> int:
    return await visits.purge_spent()


JOBS = [Cron(purge_ecert_codes, at={"hour": {3}, "minute": {27}, "second": {0}}, timeout=300)]
