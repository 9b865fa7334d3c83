"""Money tests: demo institutions and policies in place; the books audited after every test,
and checked against what the sandbox channels hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from backend.audit import full_audit
from backend.seed import seed
from tests.books import disagreements_with_the_channels


@pytest.fixture(autouse=True)
async def audited_books(
    request: pytest.FixtureRequest, clean_slate: None, sandbox_http: httpx.AsyncClient
) -> AsyncIterator[None]:
    await seed()
    yield
    problems, _ = await full_audit()
    if request.node.get_closest_marker("channel_differs") is None:
        problems += await disagreements_with_the_channels(sandbox_http)
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)
