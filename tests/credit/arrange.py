"""Arrange steps for credit tests: patients with a line, bills paid by credit, the bank settling."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from backend.settings import Settings
from tests.billing.factories import Insured, cash_item, his_headers, insured_patient, new_bill, pay

Client = httpx.AsyncClient


async def settle(bank: Client, run_worker: Any, rounds: int = 2) -> list[dict[str, Any]]:
    """The bank's callbacks delivered, then a worker applies what arrived (twice: applying one
    may make the bank call back again). Returns the bank's deliveries."""
    deliveries: list[dict[str, Any]] = []
    for _ in range(rounds):
        answer = await bank.post("/_bank/deliveries/wait", json={"timeout_s": 20})
        assert answer.status_code == 200, answer.text
        deliveries = answer.json()
        await run_worker()
    return deliveries


async def products(client: Client, patient: Insured) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/credit/products", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def apply(
    client: Client, patient: Insured, product: dict[str, Any], key: str | None = None, **consent: Any
) -> httpx.Response:
    body = {
        "product_id": product["id"],
        "consent": {"terms_version": product["terms_version"], "accepted": True},
    }
    body["consent"].update(consent)
    headers = {**patient.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post("/api/v1/credit/applications", json=body, headers=headers)


async def line_of(client: Client, patient: Insured) -> dict[str, Any]:
    answer = await client.get("/api/v1/credit", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    line: dict[str, Any] = answer.json()["lines"][0]
    return line


async def credit_patient(
    client: Client, sandbox: Client, settings: Settings, bank: Client, run_worker: Any
) -> Insured:
    """A patient whose line the bank approved (5,000 yuan, 49 days interest-free)."""
    patient = await insured_patient(client, sandbox, settings)
    applied = await apply(client, patient, (await products(client, patient))[0])
    assert applied.status_code == 202, applied.text
    await settle(bank, run_worker)
    assert (await line_of(client, patient))["status"] == "ACTIVE"
    return patient


async def bill_for(client: Client, patient: Insured, amount_fen: int) -> dict[str, Any]:
    """A bill of one self-pay item: paid without the personal account, all of it is cash."""
    return await new_bill(client, await his_headers(client), patient, cash_item(amount_fen))


async def pay_by_credit(client: Client, patient: Insured, bill: dict[str, Any]) -> httpx.Response:
    return await pay(client, patient, bill["id"], use_personal_account=False, cash_method="credit")


async def paid_by_credit(
    client: Client,
    sandbox: Client,
    settings: Settings,
    bank: Client,
    run_worker: Any,
    amount_fen: int = 25600,
) -> tuple[Insured, dict[str, Any], dict[str, Any]]:
    """A patient with a line and a bill paid by it, the bank's disbursement applied:
    (the patient, the bill, its drawdown as the patient sees it)."""
    patient = await credit_patient(client, sandbox, settings, bank, run_worker)
    bill = await bill_for(client, patient, amount_fen)
    started = await pay_by_credit(client, patient, bill)
    assert started.status_code == 200, started.text
    await settle(bank, run_worker)
    line = await line_of(client, patient)
    return patient, bill, line["drawdowns"][0]


async def repay_at_cashier(
    client: Client, bank: Client, patient: Insured, amount_fen: int, drawdown_id: str | None = None
) -> httpx.Response:
    """The patient repays: the bank's cashier opens, and the patient confirms the payment there."""
    body: dict[str, Any] = {"amount_fen": amount_fen}
    if drawdown_id is not None:
        body["drawdown_id"] = drawdown_id
    headers = {**patient.headers, "Idempotency-Key": uuid.uuid4().hex}
    started = await client.post("/api/v1/credit/repayments", json=body, headers=headers)
    if started.status_code == 201:
        confirmed = await bank.post(f"{started.json()['cashier_url']}/confirm", json={"outcome": "success"})
        assert confirmed.status_code == 200, confirmed.text
    return started
