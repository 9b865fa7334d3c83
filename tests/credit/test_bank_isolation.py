"""A second bank cannot touch the first bank's lines, drawdowns, repayments or refunds: its own,
validly signed callbacks naming them are stored under its name, flagged, and change nothing; signed
by it, they are refused at the first bank's URL; and its partner token opens none of our objects.

The first bank's callbacks are held back while the second posts, so each of its objects is in the
state the forged event would move it from; once they are let through, the real ones apply.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from backend.billing.tables import Bill, Refund
from backend.credit import banks, callbacks
from backend.credit.tables import CreditLine, CreditRefund, Drawdown, Repayment
from backend.ledger.tables import Account, Journal
from backend.notify.tables import Notification
from backend.partners import webhooks
from backend.platform.tables import InboxEvent
from tests.billing.factories import his_headers, insured_patient, refund, visit_token
from tests.credit.arrange import apply, bill_for, line_of, paid_by_credit, pay_by_credit, products, settle
from tests.helpers import bearer
from tests.platform.test_route_guards import guard_table, published, url_of

__all__ = ["published"]  # the app as `create_app` makes it, whose route table is read

OTHER = "other-bank"
APPLICATION = "flagged: no such application at this bank"
DRAWDOWN = "flagged: no such drawdown of this bank"
REPAYMENT = "flagged: no such repayment at this bank"


def key_pair() -> tuple[str, str]:
    """A bank's callback key, as the Standard Webhooks spec writes it: (`whsk_...`, `whpk_...`)."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"whsk_{base64.b64encode(raw).decode()}", f"whpk_{base64.b64encode(public).decode()}"


async def other_bank() -> tuple[str, Any]:
    """A second bank, registered as an operator registers one; its callback signing key and its
    partner client's credentials."""
    secret, public = key_pair()
    credentials = await banks.create_bank(OTHER, "另一家银行", "http://127.0.0.1:9", {"o1": public}, [])
    return secret, credentials


def event(kind: str, **data: Any) -> bytes:
    return msgspec.json.encode({"type": kind, "occurred_at": datetime.now(UTC).isoformat(), "data": data})


async def books() -> dict[str, Any]:
    """Everything a bank's callback could change, as the database has it."""
    return {
        "lines": await CreditLine.select().order_by(CreditLine.id),
        "drawdowns": await Drawdown.select().order_by(Drawdown.id),
        "repayments": await Repayment.select().order_by(Repayment.id),
        "credit refunds": await CreditRefund.select().order_by(CreditRefund.id),
        "bills": await Bill.select(Bill.id, Bill.state).order_by(Bill.id),
        "refunds": await Refund.select(Refund.id, Refund.state).order_by(Refund.id),
        "accounts": await Account.select(Account.code, Account.balance_fen).order_by(Account.code),
        "journals": await Journal.count(),
        "notifications": await Notification.count(),
        "first bank's inbox": await InboxEvent.select()
        .where(InboxEvent.source == callbacks.source("demo-bank"))
        .order_by(InboxEvent.id),
    }


async def test_a_second_banks_callbacks_naming_the_first_banks_objects_change_nothing(
    client, sandbox_http, settings, bank_http, run_worker, web_url
):
    # The first bank's objects: a line with a disbursed drawdown and a repayment waiting at its
    # cashier; then, its callbacks held back, a drawdown it has not disbursed, a refund it has not
    # posted, and another patient's application it has not decided.
    owner, paid, disbursed = await paid_by_credit(
        client, sandbox_http, settings, bank_http, run_worker, 30_000
    )
    line = await line_of(client, owner)
    started = await client.post(
        "/api/v1/credit/repayments",
        json={"amount_fen": 5_000, "drawdown_id": disbursed["id"]},
        headers={**owner.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert started.status_code == 201, started.text
    awaiting = await Repayment.select(Repayment.bank_repayment_ref).where(
        Repayment.status == "AWAITING_PAYMENT"
    )
    await bank_http.put("/_bank/config", json={"callback_url": None})
    assert (await pay_by_credit(client, owner, await bill_for(client, owner, 4_000))).status_code == 200
    reserved = await Drawdown.select(Drawdown.id, Drawdown.amount_fen).where(Drawdown.status == "RESERVED")
    asked = await refund(client, await his_headers(client), paid["id"], amount_fen=10_000)
    assert asked.status_code == 201, asked.text
    refund_no = (await Refund.select(Refund.out_refund_no).first())["out_refund_no"]
    applicant = await insured_patient(client, sandbox_http, settings)
    assert (await apply(client, applicant, (await products(client, applicant))[0])).status_code == 202
    undecided = (await line_of(client, applicant))["id"]
    secret, _ = await other_bank()
    key = webhooks.secret_key(secret)
    demo_event_id = (
        await InboxEvent.select(InboxEvent.event_id)
        .where(InboxEvent.source == callbacks.source("demo-bank"))
        .first()
    )["event_id"]
    now = datetime.now(UTC).isoformat()
    assert (await line_of(client, applicant))["status"] == "APPLIED"
    assert (await Refund.select(Refund.state).first())["state"] == "PROCESSING"
    ours = {"drawdown_id": disbursed["id"]}
    forged = {
        "approve another's application": event(
            "line.approved",
            application_id=undecided,
            line_ref="OB-L1",
            limit_fen=500_000,
            expires_on=str((datetime.now(UTC) + timedelta(days=365)).date()),
        ),
        "decline another's application": event("line.declined", application_id=undecided, reason="OTHER"),
        "decline another's active line": event("line.declined", application_id=line["id"], reason="OTHER"),
        "disburse another's drawdown": event(
            "drawdown.disbursed",
            drawdown_id=str(reserved[0]["id"]),
            amount_fen=reserved[0]["amount_fen"],
            disbursement_ref="OB-D1",
            disbursed_at=now,
        ),
        "fail another's drawdown": event(
            "drawdown.failed", drawdown_id=str(reserved[0]["id"]), reason="OTHER"
        ),
        "auto-debit another's drawdown": event(
            "repayment.posted",
            repayment_id="OB-R1",
            **ours,
            amount_fen=1_000,
            principal_fen=1_000,
            interest_fen=0,
            source="auto_debit",
            posted_at=now,
        ),
        "post another's repayment": event(
            "repayment.posted",
            repayment_id=awaiting[0]["bank_repayment_ref"],
            **ours,
            amount_fen=5_000,
            principal_fen=5_000,
            interest_fen=0,
            source="patient",
            posted_at=now,
        ),
        "fail another's repayment": event(
            "repayment.failed", repayment_id=awaiting[0]["bank_repayment_ref"], **ours, reason="OTHER"
        ),
        "post another's refund": event(
            "refund.posted",
            refund_id=refund_no,
            **ours,
            amount_fen=10_000,
            reduced_owed_fen=10_000,
            returned_fen=0,
            posted_at=now,
        ),
    }
    before = await books()

    signed = {what: (body, webhooks.sign_headers([key], body)) for what, body in forged.items()}
    at_its_own_url = {
        what: await client.post(f"/api/v1/callbacks/banks/{OTHER}", content=body, headers=headers)
        for what, (body, headers) in signed.items()
    }
    at_the_first_banks_url = {
        what: await client.post("/api/v1/callbacks/banks/demo-bank", content=body, headers=headers)
        for what, (body, headers) in signed.items()
    }
    # The first bank's webhook-id, under the second bank's name: its own event, not a duplicate.
    same_id = event("drawdown.failed", drawdown_id=str(reserved[0]["id"]), reason="OTHER")
    reused_id = await client.post(
        f"/api/v1/callbacks/banks/{OTHER}",
        content=same_id,
        headers=webhooks.sign_headers([key], same_id, msg_id=demo_event_id),
    )
    await run_worker()

    assert {w: a.status_code for w, a in at_its_own_url.items()} == dict.fromkeys(forged, 204)
    assert {w: (a.status_code, a.json()["error"]["code"]) for w, a in at_the_first_banks_url.items()} == (
        dict.fromkeys(forged, (401, "CALLBACK_SIGNATURE_INVALID"))
    )
    assert reused_id.status_code == 204
    stored = (
        await InboxEvent.select(InboxEvent.state, InboxEvent.outcome)
        .where(InboxEvent.source == callbacks.source(OTHER))
        .order_by(InboxEvent.id)
    )
    refused_as = [APPLICATION] * 3 + [DRAWDOWN] * 4 + [REPAYMENT] + [DRAWDOWN] * 2
    assert [(s["state"], s["outcome"]) for s in stored] == [("flagged", why) for why in refused_as]
    assert await books() == before

    # Let the first bank's held-back callbacks through: they apply, as the forged ones did not.
    await bank_http.put("/_bank/config", json={"callback_url": f"{web_url}/api/v1/callbacks/banks/demo-bank"})
    await settle(bank_http, run_worker)
    assert (await line_of(client, applicant))["status"] == "ACTIVE"
    assert (await Drawdown.select(Drawdown.status).where(Drawdown.id == reserved[0]["id"]).first())[
        "status"
    ] == "DISBURSED"
    assert (await Refund.select(Refund.state).first())["state"] == "SUCCEEDED"
    assert await CreditRefund.count() == 1


async def test_a_second_banks_token_opens_none_of_our_objects(
    client, sandbox_http, settings, bank_http, run_worker, published
):
    owner, bill, _ = await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 12_000)
    visit = await visit_token(client, owner)
    _, credentials = await other_bank()
    issued = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.client_id, credentials.client_secret),
    )
    assert issued.status_code == 200, issued.text
    token = bearer(issued.json()["access_token"])
    table, _ = guard_table(published)
    # No partner route takes a bank's scope today: when one does, it names banks' objects, and
    # each must be 404 to the other bank, checked here.
    assert [op for op, guard in table.items() if guard and guard.scope == "credit:callback"] == []
    answers = {}

    for operation, guard in sorted(table.items()):
        if guard is None or guard.audience != "partner":
            continue
        method, path = url_of(operation.replace("{bill_id:uuid}", str(bill["id"])))
        body = {"visit_token": visit} if operation.endswith("/visits/lookup") else None
        answers[operation] = await client.request(method, path, json=body, headers=token)

    me = answers.pop("GET /api/v1/partner/me")
    assert me.json() == {"client_id": credentials.client_id, "kind": "bank", "scopes": ["credit:callback"]}
    lookup = answers.pop("POST /api/v1/partner/visits/lookup")
    assert lookup.status_code in (403, 404), lookup.text  # a bank is no institution's partner
    assert set(lookup.json()) == {"error"} and owner.cert_no not in lookup.text
    assert {op: (a.status_code, a.json()["error"]["code"]) for op, a in answers.items()} == dict.fromkeys(
        answers, (403, "INSUFFICIENT_SCOPE")
    )
    assert (await client.get(f"/api/v1/bills/{bill['id']}", headers=token)).status_code == 401
