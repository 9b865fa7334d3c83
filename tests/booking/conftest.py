"""Booking tests: the demo institutions seeded; after every test the books are audited (places
counted, appointments against their bills) and checked against the sandbox channels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.audit import full_audit
from backend.seed import seed
from tests.billing.conftest import _disagreements_with_the_channels


@pytest.fixture(autouse=True)
async def audited_books(
    request: pytest.FixtureRequest, clean_slate: None, sandbox_http: httpx.AsyncClient
) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    problems += await _disagreements_with_the_channels(sandbox_http)
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)
