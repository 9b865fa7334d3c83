"""Whether a patient's login ended (a logout, a reused refresh token), as every patient request asks.

PostgreSQL answers (`refresh_family.revoked_at`, by its primary key), and each process remembers the
answer: a login not ended for `NOT_ENDED_SECONDS`, so a phone's burst of requests costs one lookup; an
ended one for good, as a login never starts again. A login ended by another process is thus refused
here within `NOT_ENDED_SECONDS`, and at once by the process that ended it. Nothing is asked of Redis:
one that lost its keys cannot admit a signed-out token again, and one that hangs costs a request
nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from backend.auth.tables import RefreshFamily

# How long "not ended" is believed: a logout or a stolen refresh token takes effect on the other
# processes within this time (at once on the one that ended it). The requests a page sends together,
# and a patient's next few taps, share one lookup; 5 s is nothing against the 15 minutes the access
# token would live without the check.
NOT_ENDED_SECONDS = 5.0
# Logins remembered per process, the oldest answer forgotten first (a forgotten one is looked up).
SIZE = 10_000


class EndedLogins:
    """One process's memory of which logins ended: for each login, when it was last found not ended
    (`clock`, monotonic seconds), or None once it ended."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._checked: dict[uuid.UUID, float | None] = {}

    async def ended(self, login: uuid.UUID) -> bool:
        """Ended, or unknown (a family is written before any token naming it is handed out)."""
        if login in self._checked:
            checked = self._checked[login]
            if checked is None:
                return True
            if self._clock() - checked < NOT_ENDED_SECONDS:
                return False
        asked_at = self._clock()
        row = await RefreshFamily.select(RefreshFamily.revoked_at).where(RefreshFamily.id == login).first()
        if row is None or row["revoked_at"] is not None:
            self.end(login)
            return True
        if login in self._checked and self._checked[login] is None:
            return True  # ended by this process while PostgreSQL answered
        self._remember(login, asked_at)
        return False

    def end(self, login: uuid.UUID) -> None:
        """Ended by this process: called once the transaction that ended it has committed."""
        self._remember(login, None)

    def _remember(self, login: uuid.UUID, checked: float | None) -> None:
        self._checked.pop(login, None)  # put back last: the dict keeps the order of the answers
        if len(self._checked) >= SIZE:
            del self._checked[next(iter(self._checked))]
        self._checked[login] = checked


# This process's memory, shared by its requests; PostgreSQL keeps the truth.
ENDED_LOGINS = EndedLogins()
