"""Credit tests: the sandbox bank as its own process posting callbacks to the API served by a real
web process; the books audited after every test and compared with the bank's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from backend.audit import full_audit
from backend.platform.runtime import Runtime
from backend.seed import seed
from backend.settings import Settings
from tests import servers
from tests.books import disagreements_with_the_bank


@pytest.fixture(scope="session")
def bank_url() -> Iterator[str]:
    with servers.bank() as url:
        yield url


@pytest.fixture(scope="session")
def web_url(settings: Settings, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API served by `medpay web`, where the bank posts its callbacks."""
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


@pytest.fixture(scope="session")
async def bank_http(bank_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bank_url, timeout=30) as client:
        yield client


@pytest.fixture(autouse=True)
async def bank_books(
    request: pytest.FixtureRequest,
    clean_slate: None,
    bank_http: httpx.AsyncClient,
    bank_url: str,
    web_url: str,
) -> AsyncIterator[None]:
    """A bank with empty books that calls back our web process; after the test, ours and the
    bank's must agree and the audit be clean."""
    await bank_http.delete("/_bank")
    await bank_http.put("/_bank/config", json={"callback_url": f"{web_url}/api/v1/callbacks/banks/demo-bank"})
    await seed(bank_api_base=bank_url)
    yield
    await bank_http.post("/_bank/deliveries/wait", json={"timeout_s": 20})
    problems, _ = await full_audit()
    if request.node.get_closest_marker("bank_differs") is None:
        problems += await disagreements_with_the_bank(bank_http)
    assert problems == [], "the books disagree:\n" + "\n".join(problems)
