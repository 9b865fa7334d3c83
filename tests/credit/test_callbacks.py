"""Banks' callbacks: only what a live key of that bank signed, recently, is stored; stored once;
applied in effect once, whatever the order; unknown references and other banks' lines flagged."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from backend.credit import banks, callbacks
from backend.credit.tables import Drawdown
from backend.ledger.tables import Journal
from backend.partners import webhooks
from backend.platform.tables import InboxEvent
from tests.billing.factories import insured_patient
from tests.credit.arrange import apply, bill_for, credit_patient, line_of, pay_by_credit, products, settle

K2_SECRET = "whsk_Z7TPYiqH6vG0qRzX4hRotL0En2wVD6OTRlN0vBRPbJc="  # the sandbox bank's next key
K2_PUBLIC = "whpk_Qmn9Tz204wVOWazAcvuw0ywgGIgPMXiwvqAC37v3LzU="


async def _applied_with(client, sandbox_http, settings, bank_http, run_worker, **fault):
    """A patient applies while the bank's next callback is sent with `fault`; the deliveries."""
    if fault:
        await bank_http.post("/_bank/faults", json=fault)
    patient = await insured_patient(client, sandbox_http, settings)
    assert (await apply(client, patient, (await products(client, patient))[0])).status_code == 202
    return patient, await settle(bank_http, run_worker)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "corrupt_signature"},
        {"kind": "sign_with", "keys": ["k3"]},
        {"kind": "stale_timestamp"},
    ],
    ids=["forged", "unknown key", "stale"],
)
async def test_a_callback_not_signed_by_a_live_key_just_now_is_refused_and_not_stored(
    client, sandbox_http, settings, bank_http, run_worker, fault
):
    patient, deliveries = await _applied_with(client, sandbox_http, settings, bank_http, run_worker, **fault)

    (delivery,) = deliveries
    assert delivery["attempts"] == 4  # the first, and a retry after each delay
    assert delivery["state"] == "failed" and set(delivery["statuses"]) == {401}
    assert await InboxEvent.count() == 0
    assert (await line_of(client, patient))["status"] == "APPLIED"


async def test_keys_rotate_without_downtime_and_a_retired_key_is_refused_after_its_grace(
    client, sandbox_http, settings, bank_http, run_worker
):
    await banks.add_key("demo-bank", "k2", K2_PUBLIC)
    await bank_http.put("/_bank/signing", json={"keys": ["k1", "k2"]})
    await _applied_with(client, sandbox_http, settings, bank_http, run_worker)
    await banks.retire_key("demo-bank", "k1", timedelta(hours=1))
    await bank_http.put("/_bank/signing", json={"keys": ["k1"]})
    await _applied_with(client, sandbox_http, settings, bank_http, run_worker)  # within its grace
    assert await InboxEvent.count().where(InboxEvent.state == "applied") == 2

    await banks.retire_key("demo-bank", "k1", timedelta(0))
    patient, deliveries = await _applied_with(client, sandbox_http, settings, bank_http, run_worker)
    assert set(deliveries[-1]["statuses"]) == {401}
    assert (await line_of(client, patient))["status"] == "APPLIED"

    await bank_http.put("/_bank/signing", json={"keys": ["k2"]})
    patient, deliveries = await _applied_with(client, sandbox_http, settings, bank_http, run_worker)
    assert deliveries[-1]["state"] == "delivered"
    assert (await line_of(client, patient))["status"] == "ACTIVE"


async def test_a_callback_about_an_unknown_drawdown_is_acknowledged_and_flagged(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    from backend.billing import cash

    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 4000)
    await bank_http.post(
        "/_bank/faults", json={"kind": "unknown_drawdown", "event_type": "drawdown.disbursed"}
    )
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    deliveries = await settle(bank_http, run_worker)

    assert [d["statuses"] for d in deliveries if d["type"] == "drawdown.disbursed"] == [[204]]
    flagged = await InboxEvent.select().where(InboxEvent.kind == "drawdown.disbursed").first()
    assert flagged["state"] == "flagged" and "no such drawdown" in flagged["outcome"]
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "RESERVED"
    assert await cash.check(runtime, bill["id"]) == "paid"  # the bank's query has the truth


async def test_a_repayment_that_arrives_before_its_disbursement_waits_then_applies(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 20000)
    await bank_http.post("/_bank/faults", json={"kind": "reorder", "event_type": "drawdown.disbursed"})
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    drawdown_id = str((await Drawdown.select(Drawdown.id).first())["id"])
    debit = await bank_http.post("/_bank/auto-debit", json={"drawdown_id": drawdown_id, "amount_fen": 5000})
    assert debit.status_code == 200, debit.text

    await settle(bank_http, run_worker)

    arrived = await InboxEvent.select(InboxEvent.kind, InboxEvent.state).order_by(InboxEvent.id)
    assert [(e["kind"], e["state"]) for e in arrived] == [
        ("line.approved", "applied"),
        ("repayment.posted", "applied"),  # it came first, waited, and applied after
        ("drawdown.disbursed", "applied"),
    ]
    shown = (await line_of(client, patient))["drawdowns"][0]
    assert (shown["status"], shown["repaid_fen"], shown["principal_fen"]) == ("DISBURSED", 5000, 15000)
    assert await Journal.count().where(Journal.kind == "credit.repaid") == 1


@pytest.mark.bank_differs  # the flagged repayment stands at the bank, not here, until a person settles it
async def test_an_event_that_waits_too_long_is_flagged_for_review(
    client, sandbox_http, settings, runtime, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 20000)
    await bank_http.post("/_bank/faults", json={"kind": "reorder", "event_type": "drawdown.disbursed"})
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    drawdown_id = str((await Drawdown.select(Drawdown.id).first())["id"])
    await bank_http.post("/_bank/auto-debit", json={"drawdown_id": drawdown_id, "amount_fen": 5000})
    await bank_http.post("/_bank/deliveries/wait", json={"timeout_s": 20})
    repayment = await InboxEvent.select().where(InboxEvent.kind == "repayment.posted").first()

    impatient = dataclasses.replace(
        runtime,
        settings=msgspec.structs.replace(
            settings, credit=msgspec.structs.replace(settings.credit, flag_waiting_after_seconds=1)
        ),
    )
    await InboxEvent.update({InboxEvent.received_at: datetime.now(UTC) - timedelta(seconds=5)}).where(
        InboxEvent.id == repayment["id"]
    )
    await InboxEvent.update({InboxEvent.state: "received"}).where(InboxEvent.kind == "drawdown.disbursed")
    assert await callbacks.apply(impatient, repayment["id"]) == "flagged"
    assert (await InboxEvent.select(InboxEvent.state).where(InboxEvent.id == repayment["id"]).first())[
        "state"
    ] == "flagged"
    await run_worker()  # the disbursement still applies
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "DISBURSED"


async def test_a_bank_cannot_touch_another_banks_drawdown(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await credit_patient(client, sandbox_http, settings, bank_http, run_worker)
    bill = await bill_for(client, patient, 3000)
    await bank_http.post(
        "/_bank/faults", json={"kind": "delay", "delay_ms": 3000, "event_type": "drawdown.disbursed"}
    )
    assert (await pay_by_credit(client, patient, bill)).status_code == 200
    drawdown_id = str((await Drawdown.select(Drawdown.id).first())["id"])
    await banks.create_bank("other-bank", "另一家银行", "http://127.0.0.1:9", {"k2": K2_PUBLIC}, [])
    event = {
        "type": "drawdown.disbursed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {
            "drawdown_id": drawdown_id,
            "amount_fen": 3000,
            "disbursement_ref": "D-not-ours",
            "disbursed_at": datetime.now(UTC).isoformat(),
        },
    }
    body = msgspec.json.encode(event)
    headers = webhooks.sign_headers([webhooks.secret_key(K2_SECRET)], body)

    answer = await client.post("/api/v1/callbacks/banks/other-bank", content=body, headers=headers)
    assert answer.status_code == 204
    await run_worker()
    stored = await InboxEvent.select().where(InboxEvent.source == "bank:other-bank").first()
    assert stored["state"] == "flagged"
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "RESERVED"

    forged_for_demo = await client.post("/api/v1/callbacks/banks/demo-bank", content=body, headers=headers)
    assert (forged_for_demo.status_code, forged_for_demo.json()["error"]["code"]) == (
        401,
        "CALLBACK_SIGNATURE_INVALID",
    )
    await settle(bank_http, run_worker)  # the delayed, real one
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "DISBURSED"


async def test_malformed_or_misaddressed_callbacks_get_a_clear_error(client):
    await banks.add_key("demo-bank", "k2", K2_PUBLIC)
    key = webhooks.secret_key(K2_SECRET)

    not_json = await client.post(
        "/api/v1/callbacks/banks/demo-bank", content=b"{oops", headers=webhooks.sign_headers([key], b"{oops")
    )
    unsigned = await client.post("/api/v1/callbacks/banks/demo-bank", content=b"{}")
    nobody = await client.post(
        "/api/v1/callbacks/banks/no-such-bank", content=b"{}", headers={"webhook-id": "x"}
    )
    unknown_type = msgspec.json.encode(
        {"type": "line.exploded", "occurred_at": "2026-12-01T00:00:00Z", "data": {}}
    )
    odd = await client.post(
        "/api/v1/callbacks/banks/demo-bank",
        content=unknown_type,
        headers=webhooks.sign_headers([key], unknown_type, msg_id=f"msg_{uuid.uuid4().hex}"),
    )

    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "CALLBACK_MALFORMED")
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "CALLBACK_SIGNATURE_INVALID")
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "BANK_NOT_FOUND")
    assert odd.status_code == 204
    stored = await InboxEvent.select(InboxEvent.state, InboxEvent.outcome).first()
    assert stored["state"] == "received"
