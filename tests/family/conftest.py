"""Family tests: the demo institutions and policies seeded, the books audited after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.audit import full_audit
from backend.seed import seed


@pytest.fixture(autouse=True)
async def audited_books(clean_slate: None) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)
