"""The family matrix: every operation that names an object, called by each actor around one
patient, the owner, in every place a family puts them.

The owner looks after a relative (who granted them `manage`) and an elder in their care (no
phone); holders look after the owner: one with `manage`, one the owner looks after in turn (a
spouse, linked both ways), one whose `manage` the owner took back, one who left, one whose account
now holds another person's e-certificate; and a stranger. Each operation is called on the owner's
objects, on the relative's, the elder's and a holder's: those `manage` opens them to get in, and
no one else, so `manage` opens nothing further (a holder's holder sees nothing of the holder's
relatives), and a relative sees nothing of the one who looks after them unless they granted it back.
The operations are those of tests/credit/test_matrix.py, which holds the route table to them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from backend.billing.tables import Refund
from backend.booking.tables import ClinicSession
from backend.settings import Settings
from tests.billing.factories import ITEMS, Insured, his_headers, insured_patient, key, new_bill, refund
from tests.booking.arrange import china_today, held, publish, schedule, session
from tests.books import disagreements_with_the_channels
from tests.credit import test_matrix as credit_matrix
from tests.credit.arrange import bill_for, line_of, pay_by_credit, settle
from tests.credit.conftest import bank_books, bank_http, bank_url, web_url
from tests.family.test_acting_for import linked
from tests.family.test_links import accept, add_relative, invite
from tests.helpers import bearer, bind_ecert, terminal_token
from tests.identities import resident_id
from tests.matrix import Client, Matrix, Names, Own, World, patient_operations

__all__ = ["bank_books", "bank_http", "bank_url", "web_url"]  # the bank the owner's line needs

ACTORS = ("owner", "holder", "mutual", "relative", "revoked", "left", "rebound", "stranger")
OWNER = frozenset({"owner"})
HOLDER = frozenset({"holder"})
# `manage` over the owner: the holder's, and the spouse's to whom the owner gave it back.
OWNERS_SIDE = frozenset({"owner", "holder", "mutual"})
RELATIVES_SIDE = frozenset({"owner", "relative"})  # the relative's own, and the owner's who manages them
WECHAT = {"use_personal_account": False, "cash_method": "wechat"}
BOOK = {"session_id": "{free_session_id}", "relative_link_id": "{link_id}"}

# In the order the allowed actors call them: reads, then changes, ending links last. `of` names whose
# objects fill the placeholders: the owner's unless said.
NAMES_AN_OBJECT = [
    Names("GET /api/v1/bills/{bill_id}", OWNERS_SIDE),
    Names("GET /api/v1/bills/{bill_id}", OWNERS_SIDE, of="refunded"),  # with its refund
    Names("GET /api/v1/bills/{bill_id}", RELATIVES_SIDE, of="relative"),
    Names("GET /api/v1/bills/{bill_id}", OWNER, of="elder"),
    Names("GET /api/v1/bills/{bill_id}", HOLDER, of="holder"),
    Names("GET /api/v1/appointments/{appointment_id}", OWNERS_SIDE),
    # A relative's QR code on the phone of whom holds the link: not the relative's, not anyone's else.
    Names("GET /api/v1/family/links/{link_id}/qrcode", HOLDER),
    Names("GET /api/v1/family/links/{link_id}/qrcode", OWNER, of="relative"),
    Names("GET /api/v1/family/links/{link_id}/qrcode", OWNER, of="elder"),
    Names("POST /api/v1/bills/{bill_id}/presettle", OWNERS_SIDE, {}),
    Names("POST /api/v1/bills/{bill_id}/presettle", RELATIVES_SIDE, {}, of="relative"),
    Names("POST /api/v1/bills/{bill_id}/presettle", OWNER, {}, of="elder"),
    Names("POST /api/v1/bills/{bill_id}/presettle", HOLDER, {}, of="holder"),
    # Either side reaches a link; `manage` is the relative's to give (403 GRANT_NOT_YOURS to the other).
    Names("PUT /api/v1/family/links/{link_id}/grants", frozenset({"owner", "holder"}), {"manage": True}),
    Names("PUT /api/v1/family/links/{link_id}/grants", RELATIVES_SIDE, {"manage": True}, of="relative"),
    Names("PUT /api/v1/family/links/{link_id}/grants", OWNER, {"pay": False}, of="elder"),
    Names("POST /api/v1/notifications/{notification_id}/read", OWNER),
    Names("DELETE /api/v1/waitlist/{entry_id}", OWNER),
    Names("POST /api/v1/credit/repayments", OWNER, {"amount_fen": 100, "drawdown_id": "{drawdown_id}"}),
    Names("POST /api/v1/bills/{bill_id}/pay", OWNERS_SIDE, WECHAT),
    Names("POST /api/v1/bills/{bill_id}/pay", RELATIVES_SIDE, WECHAT, of="relative"),
    Names("POST /api/v1/bills/{bill_id}/pay", OWNER, WECHAT, of="elder"),
    Names("POST /api/v1/appointments", HOLDER, BOOK),  # for the owner, under the holder's link
    Names("POST /api/v1/appointments", OWNER, BOOK, of="relative"),
    Names("POST /api/v1/appointments", OWNER, BOOK, of="elder"),
    Names("POST /api/v1/appointments/{appointment_id}/cancel", OWNERS_SIDE),
    Names("POST /api/v1/family/links/{link_id}/end", frozenset({"owner", "holder"})),
    Names("POST /api/v1/family/links/{link_id}/end", RELATIVES_SIDE, of="relative"),
]

BILLS = ("bill_id", "paid_bill_id", "relatives_bill_id", "elders_bill_id", "holders_bill_id")
OWN = [
    Own("GET /api/v1/me"),
    Own("GET /api/v1/me/security-events"),
    Own("GET /api/v1/ecert", ("cert_no",)),
    Own("GET /api/v1/ecert/qrcode"),
    Own("GET /api/v1/notifications", ("notification_id",)),
    Own("GET /api/v1/notifications/subscriptions"),
    Own("POST /api/v1/notifications/subscriptions", body={"results": {"wxtpl-pay-success": "reject"}}),
    Own("GET /api/v1/bills", BILLS),
    Own("GET /api/v1/appointments", ("appointment_id",)),
    Own("GET /api/v1/waitlist", ("entry_id",)),
    Own("GET /api/v1/credit", ("line_id", "drawdown_id")),
    Own("GET /api/v1/family", ("link_id", "relatives_link_id", "elders_link_id")),
    Own("POST /api/v1/notifications/read-all", last=True),
    Own("DELETE /api/v1/ecert", last=True),
]


@pytest.fixture(autouse=True)
async def audited_books(bank_books: None, sandbox_http: httpx.AsyncClient) -> AsyncIterator[None]:
    """The family tests' books, with the credit tests' bank: the bank's compared by `bank_books`,
    the channels' here."""
    yield
    problems = await disagreements_with_the_channels(sandbox_http)
    assert problems == [], "the channels disagree:\n" + "\n".join(problems)


def test_the_family_matrix_has_every_operation_the_credit_matrix_holds_to_the_route_table(
    app: Litestar,
) -> None:
    named = {row.operation for row in credit_matrix.NAMES_AN_OBJECT}
    own = {row.operation for row in credit_matrix.OWN}

    assert {row.operation for row in NAMES_AN_OBJECT} == named
    assert [row.operation for row in OWN] == [row.operation for row in credit_matrix.OWN]
    assert patient_operations(app) == named | own | set(credit_matrix.NAMES_NO_ONE)
    for row in NAMES_AN_OBJECT:
        assert row.allowed <= set(ACTORS), row


async def spouses(client: Client, one: Insured, other: Insured) -> dict[str, Any]:
    """`one` links `other` as their spouse, and `other` grants `manage`."""
    code = (await invite(client, one, "SPOUSE")).json()["code"]
    link: dict[str, Any] = (await accept(client, other, code, "SPOUSE")).json()
    granted = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"manage": True}, headers=other.headers
    )
    assert granted.status_code == 200, granted.text
    return link


async def an_elder_in_care(client: Client, sandbox: Client, owner: Insured) -> tuple[dict[str, Any], str]:
    """An elder without a phone in the owner's care, who came to the hospital on the owner's phone
    (their code, shown by the owner, opened a visit): the link, and the elder's visit."""
    link = (await add_relative(client, sandbox, owner, "PARENT", id_number=resident_id("330106"))).json()
    code = await client.get(f"/api/v1/family/links/{link['id']}/qrcode", headers=owner.headers)
    terminal = bearer(await terminal_token(client))
    opened = await client.post(
        "/api/v1/partner/ecert/decode", json={"qr": code.json()["payload"]}, headers=terminal
    )
    assert opened.status_code == 200, opened.text
    return link, str(opened.json()["visit_token"])


async def arrange(
    client: Client, sandbox: Client, settings: Settings, bank: Client, run_worker: Any
) -> World:
    owner = await credit_matrix.an_owner_with_a_line(client, sandbox, settings, bank, run_worker)
    his = await his_headers(client)
    paid_bill = await bill_for(client, owner, 25_600)
    assert (await pay_by_credit(client, owner, paid_bill)).status_code == 200
    await settle(bank, run_worker)
    assert (await refund(client, his, paid_bill["id"], amount_fen=5_000)).status_code == 201
    await settle(bank, run_worker)
    actors = {"owner": owner}
    for name in ACTORS[1:]:
        visiting = "H33010001" if name in ("holder", "relative") else None
        actors[name] = await insured_patient(client, sandbox, settings, visiting=visiting)

    holders = {
        h: await linked(client, actors[h], owner, manage=True)
        for h in ("holder", "revoked", "left", "rebound")
    }
    relative_link = await linked(client, owner, actors["relative"], manage=True)
    await spouses(client, actors["mutual"], owner)
    await spouses(client, owner, actors["mutual"])
    elder_link, elder_visit = await an_elder_in_care(client, sandbox, owner)
    taken_back = await client.put(
        f"/api/v1/family/links/{holders['revoked']['id']}/grants",
        json={"manage": False},
        headers=owner.headers,
    )
    left = await client.post(
        f"/api/v1/family/links/{holders['left']['id']}/end", headers=actors["left"].headers
    )
    unbound = await client.delete("/api/v1/ecert", headers=actors["rebound"].headers)
    rebound = await bind_ecert(client, actors["rebound"].tokens, "测试另一人", resident_id("330106"))
    assert [a.status_code for a in (taken_back, left, unbound, rebound)] == [200, 200, 204, 200], rebound.text

    bill = await new_bill(client, his, owner, ITEMS)
    relatives_bill = await new_bill(client, his, actors["relative"], ITEMS)
    holders_bill = await new_bill(client, his, actors["holder"], ITEMS)
    elders = await client.post(
        "/api/v1/partner/bills",
        json={"order_type": "DIAG", "visit_token": elder_visit, "items": ITEMS},
        headers={**his, **key()},
    )
    assert elders.status_code == 201, elders.text
    tomorrow = china_today() + timedelta(days=1)
    own, full = session("D001", tomorrow), session("D002", tomorrow, capacity=1)
    free = session("D002", tomorrow + timedelta(days=1))
    await publish(client, schedule([own, full, free]))
    sessions = {s["code"]: s["id"] for s in await ClinicSession.select(ClinicSession.id, ClinicSession.code)}
    appointment = await held(client, owner, sessions[own["code"]])
    await held(client, actors["stranger"], sessions[full["code"]])
    entry = await client.post(f"/api/v1/sessions/{sessions[full['code']]}/waitlist", headers=owner.headers)
    assert entry.status_code == 201, entry.text
    await run_worker()

    inbox = (await client.get("/api/v1/notifications", headers=owner.headers)).json()["items"]
    assert inbox, "the owner was told of nothing"
    line = await line_of(client, owner)
    given_back = await Refund.select(Refund.id, Refund.state).first()
    assert given_back["state"] == "SUCCEEDED"
    ids = {
        "bill_id": bill["id"],
        "appointment_id": appointment["id"],
        "notification_id": inbox[0]["id"],
        "entry_id": entry.json()["id"],
        "link_id": holders["holder"]["id"],
        "drawdown_id": line["drawdowns"][0]["id"],
        "free_session_id": sessions[free["code"]],
    }
    others = {
        "refunded": {"bill_id": paid_bill["id"]},
        "relative": {"bill_id": relatives_bill["id"], "link_id": relative_link["id"]},
        "elder": {"bill_id": elders.json()["id"], "link_id": elder_link["id"]},
        "holder": {"bill_id": holders_bill["id"]},
    }
    secrets: dict[str, str | int] = {
        **{k: v for k, v in ids.items() if k != "free_session_id"},
        "paid_bill_id": paid_bill["id"],
        "refund_id": str(given_back["id"]),
        "appointment_bill_id": appointment["bill_id"],
        "line_id": line["id"],
        "cert_no": owner.cert_no,
        "id_number": owner.id_number,
        "name": credit_matrix.OWNER_NAME,
        "relatives_bill_id": relatives_bill["id"],
        "relatives_link_id": relative_link["id"],
        "relatives_cert_no": actors["relative"].cert_no,
        "elders_bill_id": elders.json()["id"],
        "elders_link_id": elder_link["id"],
        "holders_bill_id": holders_bill["id"],
        "holders_cert_no": actors["holder"].cert_no,
    }
    owners = {"bill_id", "paid_bill_id", "refund_id", "appointment_id", "appointment_bill_id"}
    knows: dict[str, set[str]] = {a: set() for a in ACTORS}
    knows["owner"] = set(secrets) - {"holders_bill_id", "holders_cert_no", "relatives_cert_no"}
    knows["holder"] = owners | {"link_id", "holders_bill_id", "holders_cert_no"}
    knows["mutual"] = owners
    knows["relative"] = {"relatives_bill_id", "relatives_link_id", "relatives_cert_no"}
    return World(client, actors, ids, secrets, knows, others)


def cells(names: list[Names], own: list[Own]) -> int:
    """Every refusal twice (before and after the changes), every admission once, every own row
    by every actor once."""
    refused = sum(len(set(ACTORS) - row.allowed) for row in names)
    return 2 * refused + sum(len(row.allowed) for row in names) + len(ACTORS) * len(own)


async def test_the_family_matrix_over_every_operation_that_names_an_object(
    client: Client, sandbox_http: Client, settings: Settings, bank_http: Client, run_worker: Any
) -> None:
    matrix = Matrix(await arrange(client, sandbox_http, settings, bank_http, run_worker), NAMES_AN_OBJECT)
    reads = [row for row in OWN if not row.last]

    await matrix.unchanged_for_the_owner("the refusals", matrix.refusals())
    await matrix.unchanged_for_the_owner("the own lists", matrix.own(reads, ACTORS))
    await matrix.let_in()
    await matrix.unchanged_for_the_owner("the refusals once changed", matrix.refusals())
    for row in (row for row in OWN if row.last):
        await matrix.unchanged_for_the_owner(row.operation, matrix.own([row], ACTORS[1:]))
        await matrix.own([row], ("owner",))

    assert matrix.cells == cells(NAMES_AN_OBJECT, OWN)
    assert matrix.problems == [], (
        f"the family matrix fails in {len(matrix.problems)} of {matrix.cells} cells:\n"
        + "\n".join(matrix.problems)
    )
