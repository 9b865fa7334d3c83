"""Credit tests: the sandbox bank as its own process posting callbacks to the API served by a real
web process; the books audited after every test and compared with the bank's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from backend.audit import full_audit
from backend.credit.tables import CreditLine, Drawdown
from backend.platform.runtime import Runtime
from backend.seed import seed
from backend.settings import Settings
from tests import servers


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


async def disagreements_with_the_bank(bank: httpx.AsyncClient) -> list[str]:
    """Our lines and drawdowns against the bank's: limits, what was disbursed, owed, repaid, refunded."""
    books: dict[str, Any] = (await bank.get("/_bank/books")).json()
    theirs = {d["drawdown_id"]: d for d in books["drawdowns"]}
    lines = {line["application_id"]: line for line in books["lines"]}
    problems = []
    for line in await CreditLine.select():
        there = lines.get(str(line["id"]))
        if line["status"] in ("ACTIVE", "FROZEN") and (
            there is None or there["limit_fen"] != line["limit_fen"]
        ):
            problems.append(f"line {line['id']}: ours {line['limit_fen']} fen, the bank's {there}")
    ours_by_id = {str(d["id"]): d for d in await Drawdown.select()}
    for drawdown_id, there in theirs.items():
        if there["status"] != "FAILED" and ours_by_id.get(drawdown_id, {}).get("status") not in (
            "DISBURSED",
            "REPAID",
        ):
            problems.append(
                f"the bank disbursed drawdown {drawdown_id}; ours is {ours_by_id.get(drawdown_id)}"
            )
    for ours in ours_by_id.values():
        there = theirs.get(str(ours["id"]))
        if ours["status"] in ("DISBURSED", "REPAID"):
            if there is None:
                problems.append(f"drawdown {ours['id']} is {ours['status']} here, unknown at the bank")
                continue
            mine = (ours["amount_fen"], ours["principal_fen"], ours["repaid_fen"], ours["refunded_fen"])
            bank_side = (
                there["amount_fen"],
                there["principal_outstanding_fen"],
                there["repaid_fen"],
                there["reduced_by_refunds_fen"],
            )
            if mine != bank_side:
                problems.append(f"drawdown {ours['id']}: ours {mine}, the bank's {bank_side}")
        elif ours["status"] == "FAILED" and there is not None and there["status"] == "DISBURSED":
            problems.append(f"drawdown {ours['id']} failed here but the bank disbursed it")
        elif ours["status"] == "RESERVED":
            problems.append(
                f"drawdown {ours['id']} is still RESERVED (the bank: {there and there['status']})"
            )
    return problems
