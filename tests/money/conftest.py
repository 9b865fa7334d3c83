"""Money tests: demo institutions and policies in place, and the books audited after every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.billing.audit import full_audit
from backend.seed import seed


@pytest.fixture(autouse=True)
async def audited_books(clean_slate: None) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)
