"""Family tests: the demo institutions and policies seeded; after each test the books audited and
compared with the sandbox channels'."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.audit import full_audit
from backend.seed import seed
from tests.billing.conftest import _disagreements_with_the_channels


@pytest.fixture(autouse=True)
async def audited_books(clean_slate: None, sandbox_http: httpx.AsyncClient) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    problems += await _disagreements_with_the_channels(sandbox_http)
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)
