"""The process asking the bank to disburse SIGKILLed while the bank answers: the bank pays the
hospital once, the bill is paid once, and our books agree with the bank's (tests/credit/conftest.py).

The bank is asked in the pay request itself (`drawdowns.open_collection`, after the reservation
commits), so the first test kills a web process (`medpay web`) at that moment and lets the patient's
retry finish; a request that never reached the bank is asked again by the payment check, a worker
job (`drawdowns.check`), which the second test kills in the same place.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.billing.tables import Bill
from backend.credit.tables import Bank, Drawdown
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.platform.tables import IdempotencyKey
from tests import servers
from tests.billing.factories import pay
from tests.credit.arrange import bill_for, credit_patient, line_of, settle
from tests.faults.conftest import lapse, until
from tests.helpers import Client

pytestmark = pytest.mark.processes

AMOUNT_FEN = 15000


async def arm(bank: Client, **fault: Any) -> None:
    answer = await bank.post("/_bank/api-faults", json={"api": "disbursements", **fault})
    assert answer.status_code == 201, answer.text


@asynccontextmanager
async def answer_lost(bank_url: str) -> AsyncIterator[servers.Relay]:
    """The banks reached through a relay that loses the bank's answer to the first disbursement
    request: the bank has it and has answered, the process that asked hears nothing."""
    with servers.relay(bank_url, "POST /v1/credit/disbursements") as relay:
        await Bank.update({Bank.api_base: relay.url}).where(Bank.api_base == bank_url)
        try:
            yield relay
        finally:
            await Bank.update({Bank.api_base: bank_url}).where(Bank.api_base == relay.url)


async def disbursement_requests(bank: Client, count: int) -> list[dict[str, Any]]:
    """The disbursement requests the bank has answered, once there are `count` of them."""

    async def answered() -> list[dict[str, Any]] | None:
        calls = (await bank.get("/_bank/calls")).json()
        found = [c for c in calls if c["api"] == "POST /v1/credit/disbursements"]
        return found if len(found) >= count else None

    return await until(answered, f"{count} disbursement requests answered")


async def paid_once(client: Client, bank: Client, patient: Any, requests: int) -> None:
    """One drawdown disbursed at the bank however often it was asked; the bill paid, the debt
    drawn and the patient told, once."""
    asked = await disbursement_requests(bank, requests)
    assert len(asked) == requests
    assert len({call["body"]["drawdown_id"] for call in asked}) == 1
    [theirs] = (await bank.get("/_bank/books")).json()["drawdowns"]
    assert (theirs["status"], theirs["amount_fen"]) == ("DISBURSED", AMOUNT_FEN)
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Journal.count().where(Journal.kind == "credit.drawn") == 1
    assert await Notification.count().where(Notification.template == "credit_paid") == 1
    line = await line_of(client, patient)
    assert [d["status"] for d in line["drawdowns"]] == ["DISBURSED"]
    assert line["used_fen"] == AMOUNT_FEN


async def paying_since(seconds: int) -> None:
    """The payment in progress began `seconds` ago, as the clock would have it."""
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    await Bill.update({Bill.paying_at: since}).where(Bill.state == "PAYING")


def children(pid: int) -> set[int]:
    """The processes `pid` started, from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def sigkill_tree(pid: int) -> None:
    """SIGKILL a process, then what it had started (it is gone first, so it starts nothing new)."""
    below = children(pid)
    os.kill(pid, signal.SIGKILL)
    for child in below:
        sigkill_tree(child)


async def test_a_web_process_killed_while_asking_the_bank_leaves_one_disbursement_for_its_retry(
    client, sandbox_http, settings, bank_http, bank_url, runtime, run_worker, tmp_path
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, AMOUNT_FEN)
    key = uuid.uuid4().hex
    # The bank disburses as it is asked and answers; the answer is lost on the way, and the web
    # process, which would wait 30 s for it, dies waiting.
    async with answer_lost(bank_url) as relay:
        waiting = servers.WAITING_FOR_AN_ANSWER
        with servers.web_process(settings, tmp_path / "web.log", waiting) as (url, web):
            async with httpx.AsyncClient(base_url=url, timeout=60) as phone:
                paying = asyncio.create_task(
                    pay(phone, patient, bill["id"], key, use_personal_account=False, cash_method="credit")
                )
                await until(relay.lost, "the bank's answer to the disbursement request")
                sigkill_tree(web.pid)  # `medpay web`, and its worker, which serves the request
                with pytest.raises(httpx.TransportError):
                    await paying
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "RESERVED"
    assert len(await disbursement_requests(bank_http, 1)) == 1  # the bank answered the dead process

    # The phone got no answer: it sends the payment again under its key, once the dead request's
    # hold on the key has lapsed (as it does within seconds); the payment resumes.
    await IdempotencyKey.raw(
        "UPDATE idempotency_key SET locked_until = now() - interval '1 second' WHERE status_code IS NULL"
    )
    retried = await pay(client, patient, bill["id"], key, use_personal_account=False, cash_method="credit")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["launch"]["status"]) == ("PAYING", "DISBURSING")
    await settle(bank_http, run_worker)

    await paid_once(client, bank_http, patient, requests=2)  # asked twice, under one drawdown id


@pytest.mark.parametrize("bank_took_it", [True, False], ids=["bank-acted", "bank-refusing"])
async def test_a_worker_killed_while_the_payment_check_asks_the_bank_leaves_one_disbursement(
    client, sandbox_http, settings, bank_http, bank_url, runtime, run_worker, bank_took_it
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, AMOUNT_FEN)
    # The bank is out of service when the bill is paid: the disbursement is left to the check.
    await arm(bank_http, http_status=503, times=3)
    started = await pay(client, patient, bill["id"], use_personal_account=False, cash_method="credit")
    assert (started.status_code, started.json()["state"]) == (200, "PAYING")
    assert (await bank_http.get("/_bank/books")).json()["drawdowns"] == []
    # The check, when it comes, finds no disbursement and asks; the bank disburses (its callback
    # held back until the worker is gone) or refuses, and answers; the answer is lost on the way,
    # and the worker, which would wait 30 s for it, dies waiting.
    if bank_took_it:
        callback = {"kind": "reorder", "event_type": "drawdown.disbursed"}
        assert (await bank_http.post("/_bank/faults", json=callback)).status_code == 201
    else:
        await arm(bank_http, http_status=503)
    # The check comes once the payment has waited past the check delay: the bill sweeper, which a
    # worker runs as it starts, finds it then.
    await paying_since(settings.billing.payment_check_after_seconds + 1)
    async with answer_lost(bank_url) as relay:
        worker = servers.arq_worker(settings, servers.WAITING_FOR_AN_ANSWER)
        try:
            await until(relay.lost, "the bank's answer to the disbursement request")
        finally:
            worker.kill()  # SIGKILL: no cleanup of any kind
            worker.wait(10)
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"
    # The bank answered the dead worker (and the three tries of the payment before).
    assert len(await disbursement_requests(bank_http, 1 + 3)) == 1 + 3
    books = (await bank_http.get("/_bank/books")).json()
    assert len(books["drawdowns"]) == (1 if bank_took_it else 0)
    await bank_http.delete("/_bank/faults")  # the callback held back goes out now

    # The dead worker's claim on the check lapses, as it does with time; the check runs again
    # (and the bank's callback, if it disbursed, is applied beside it).
    await lapse(runtime)
    await run_worker()
    await settle(bank_http, run_worker)

    # Acted on, the check finds the disbursement by the bank's query; refused, it asks again.
    await paid_once(client, bank_http, patient, requests=3 + 1 + (0 if bank_took_it else 1))
