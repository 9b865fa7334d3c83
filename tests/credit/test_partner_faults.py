"""The sandbox bank's API timing out, answering 5xx, or answering garbage when we ask it to
disburse or to refund (`POST /_bank/api-faults`): the payment or the refund goes on and ends once,
whether the bank took the request and only its answer was lost (`acts`) or never took it. The bank
keys both on our ids (the drawdown id, the refund's out_refund_no), so a request sent again after a
lost answer is booked once: its books hold one disbursement, one refund. The books are audited and
compared with the bank's after every test (tests/credit/conftest.py).

The bank records no call times, so the spacing of retries is shown against the sandbox partners,
which the same client code retries (tests/faults/test_partner_faults.py). Callbacks the bank sends
wrong (duplicated, late, reordered, mis-signed): tests/credit/test_callbacks.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.billing.jobs import sweep_bills
from backend.billing.tables import Bill, Refund
from backend.credit.tables import CreditRefund
from backend.ledger.tables import Journal
from backend.platform.runtime import Runtime
from tests.billing.factories import his_headers, pay, refund
from tests.credit.arrange import bill_for, credit_patient, paid_by_credit, settle
from tests.faults.conftest import until
from tests.helpers import Client

LATE = {"delay_ms": 2500}  # booked, then answered after the client's 2 s timeout
TRIES = 3  # the first request and the client's two retries (MEDPAY_PARTNER_RETRIES)
LOST = {"http_status": 502, "acts": True, "times": TRIES}  # booked, every answer a gateway's 502
NOT_TAKEN = {"http_status": 503, "times": TRIES}  # refused before the bank looked, every try


async def arm(bank: Client, api: str, fault: dict[str, Any]) -> None:
    answer = await bank.post("/_bank/api-faults", json={"api": api, **fault})
    assert answer.status_code == 201, answer.text


async def posted(bank: Client, path: str, count: int) -> list[dict[str, Any]]:
    """The requests POSTed to the bank's `path` once it has answered `count` (a late one included)."""

    async def enough() -> list[dict[str, Any]] | None:
        calls = (await bank.get("/_bank/calls")).json()
        found = [c for c in calls if c["api"] == f"POST /v1/credit/{path}"]
        return found if len(found) >= count else None

    return await until(enough, f"{count} requests to {path}")


async def swept(runtime: Runtime, run_worker: Any) -> None:
    """The sweeper finds what has waited past the check delay, and a worker runs it."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await Bill.update({Bill.paying_at: long_ago}).where(Bill.state == "PAYING")
    await Refund.update({Refund.created_at: long_ago}).where(Refund.state == "REQUESTED")
    assert await sweep_bills(runtime) >= 1
    await run_worker()


DISBURSE_FAULTS = [
    # (fault, the payment's first answer, whether the payment check asks again, POSTs in the end)
    pytest.param(LATE, 200, False, 2, id="timeout-after-booking"),
    pytest.param(
        {"http_status": 502, "acts": True, "times": TRIES}, 200, False, TRIES, id="5xx-after-booking"
    ),
    pytest.param({"http_status": 503, "times": TRIES}, 200, True, TRIES + 1, id="5xx-not-taken"),
    pytest.param({"body": "html"}, 502, False, 2, id="garbage-after-booking"),
]


@pytest.mark.parametrize(("fault", "first", "checked", "requests"), DISBURSE_FAULTS)
async def test_a_disbursement_whose_answer_was_lost_is_disbursed_once(
    client, sandbox_http, settings, bank_http, runtime, run_worker, fault, first, checked, requests
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 25600)
    await arm(bank_http, "disbursements", fault)
    key = uuid.uuid4().hex

    answer = await pay(client, patient, bill["id"], key, use_personal_account=False, cash_method="credit")

    assert answer.status_code == first, answer.text
    if first != 200:  # the envelope names why; the patient's repeat resumes the same drawdown
        assert answer.json()["error"]["code"] == "PARTNER_ANSWER_UNUSABLE"
        again = await pay(client, patient, bill["id"], key, use_personal_account=False, cash_method="credit")
        assert again.status_code == 200, again.text
    if checked:  # the bank never had it: the payment check finds no disbursement and asks again
        assert (await bank_http.get("/_bank/books")).json()["drawdowns"] == []
        await swept(runtime, run_worker)
    deliveries = await settle(bank_http, run_worker)

    asked = await posted(bank_http, "disbursements", requests)
    assert len(asked) == requests
    assert len({c["body"]["drawdown_id"] for c in asked}) == 1  # one drawdown id, asked again
    [drawdown] = (await bank_http.get("/_bank/books")).json()["drawdowns"]
    assert (drawdown["status"], drawdown["amount_fen"]) == ("DISBURSED", 25600)
    assert [d["type"] for d in deliveries if d["type"].startswith("drawdown.")] == ["drawdown.disbursed"]
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1


REFUND_FAULTS = [
    # (fault, the hospital's answer, whether the sweeper asks again, POSTs in the end)
    pytest.param(LATE, 201, False, 2, id="timeout-after-booking"),
    pytest.param(
        {"http_status": 502, "acts": True, "times": TRIES}, 202, False, TRIES, id="5xx-after-booking"
    ),
    pytest.param({"http_status": 503, "times": TRIES}, 202, True, TRIES + 1, id="5xx-not-taken"),
    pytest.param({"body": "truncated"}, 202, False, 1, id="garbage-after-booking"),
]


@pytest.mark.parametrize(("fault", "first", "swept_again", "requests"), REFUND_FAULTS)
async def test_a_credit_refund_whose_answer_was_lost_is_refunded_once(
    client, sandbox_http, settings, bank_http, runtime, run_worker, fault, first, swept_again, requests
):
    _, bill, drawdown = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 30000)
    await arm(bank_http, "refunds", fault)

    answer = await refund(client, await his_headers(client), bill["id"], amount_fen=12000)

    assert answer.status_code == first, answer.text
    if first == 202:  # not heard: left REQUESTED for the bank's `refund.posted`, or the sweeper
        assert answer.json()["state"] == "REQUESTED"
    if swept_again:  # the bank never had it: the sweeper sends it again, with the same refund id
        assert (await bank_http.get("/_bank/books")).json()["refunds"] == []
        await swept(runtime, run_worker)
    await settle(bank_http, run_worker)

    asked = await posted(bank_http, "refunds", requests)
    assert len(asked) == requests
    assert len({c["body"]["refund_id"] for c in asked}) == 1
    books = (await bank_http.get("/_bank/books")).json()
    assert [(r["drawdown_id"], r["amount_fen"]) for r in books["refunds"]] == [(drawdown["id"], 12000)]
    assert books["drawdowns"][0]["principal_outstanding_fen"] == 18000
    assert (await Refund.select(Refund.state).first())["state"] == "SUCCEEDED"
    assert await CreditRefund.count() == 1
    assert await Journal.count().where(Journal.kind == "credit.refunded") == 1


async def test_the_bank_arms_only_api_faults_it_can_give(bank_http):
    for nonsense in (
        {"api": "disbursements"},  # nothing to do
        {"api": "disbursements", "delay_ms": 10, "acts": False},  # not taken, yet no answer given
        {"api": "loans", "http_status": 503},
        {"api": "refunds", "body": "xml"},
    ):
        refused = await bank_http.post("/_bank/api-faults", json=nonsense)
        assert (refused.status_code, refused.json()["code"]) == (400, "BAD_REQUEST"), nonsense

    armed = await bank_http.post("/_bank/api-faults", json={"api": "refunds", "http_status": 503, "times": 2})

    assert armed.json() == {"api": "refunds", "times": 2, "http_status": 503, "acts": False}
    assert (await bank_http.get("/_bank/api-faults")).json() == [armed.json()]
    await bank_http.delete("/_bank/api-faults")
    assert (await bank_http.get("/_bank/api-faults")).json() == []
