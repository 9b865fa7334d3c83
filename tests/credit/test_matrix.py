"""The authorization matrix: every patient operation of the published API has an entry here.

An operation that names someone's object (by a path parameter or a body field) is called by each
actor around one insured person: the owner; holders of links to them granting `manage`, only
`pay`, only a credit cap, nothing; a holder whose link ended; a stranger. Those it does not let in
get 404 and nothing of the owner's, and change nothing; the others get in. The caller's own lists
and singletons are called by everyone, and show the owner's things only to whom they are opened.
An operation that names no one's object says why. An operation without an entry, or an entry
whose operation is gone, fails the test. It lives with credit for the bank the owner's line needs;
its machinery is tests/matrix.py, which tests/family/test_matrix.py shares.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from litestar import Litestar

from backend.booking.tables import ClinicSession
from backend.settings import Settings
from tests.billing.factories import (
    ITEMS,
    Insured,
    his_headers,
    insured_patient,
    new_bill,
    visit_token,
)
from tests.booking.arrange import china_today, held, publish, schedule, session
from tests.credit.arrange import apply, bill_for, line_of, pay_by_credit, products, settle
from tests.family.test_acting_for import linked
from tests.family.test_mutual_aid import grant
from tests.helpers import bind_ecert, login
from tests.identities import employee_id
from tests.matrix import Client, Matrix, Names, Own, World, patient_operations

ACTORS = ("owner", "manage", "pay", "credit", "ungranted", "ended", "stranger")
HOLDERS = ACTORS[1:-1]
OWNER = frozenset({"owner"})
OWNER_AND_MANAGE = frozenset({"owner", "manage"})
MANAGE = frozenset({"manage"})
OWNER_NAME = "测试矩阵本人"  # the sandbox verifies names with this prefix; no other patient has it


# In the order the allowed actors call them: reads, then what changes things, ending the link last.
NAMES_AN_OBJECT = [
    Names("GET /api/v1/bills/{bill_id}", OWNER_AND_MANAGE),
    Names("GET /api/v1/appointments/{appointment_id}", OWNER_AND_MANAGE),
    Names("GET /api/v1/family/links/{link_id}/qrcode", MANAGE),  # the owner's QR on the holder's phone
    Names("POST /api/v1/bills/{bill_id}/presettle", OWNER_AND_MANAGE, {}),
    # `manage` is the relative's to give: the holder reaches the link and is told 403 GRANT_NOT_YOURS.
    Names("PUT /api/v1/family/links/{link_id}/grants", OWNER_AND_MANAGE, {"manage": True}),
    Names("POST /api/v1/notifications/{notification_id}/read", OWNER),
    Names("DELETE /api/v1/waitlist/{entry_id}", OWNER),
    Names("POST /api/v1/credit/repayments", OWNER, {"amount_fen": 100, "drawdown_id": "{drawdown_id}"}),
    Names(
        "POST /api/v1/bills/{bill_id}/pay",
        OWNER_AND_MANAGE,
        {"use_personal_account": False, "cash_method": "wechat"},
    ),
    Names(
        "POST /api/v1/appointments",
        MANAGE,
        {"session_id": "{free_session_id}", "relative_link_id": "{link_id}"},
    ),
    Names("POST /api/v1/appointments/{appointment_id}/cancel", OWNER_AND_MANAGE),
    Names("POST /api/v1/family/links/{link_id}/end", OWNER_AND_MANAGE),
]

OWN = [
    Own("GET /api/v1/me"),
    Own("GET /api/v1/me/security-events"),
    Own("GET /api/v1/ecert", ("cert_no",)),
    Own("GET /api/v1/ecert/qrcode"),
    Own("GET /api/v1/notifications", ("notification_id",)),
    Own("GET /api/v1/notifications/subscriptions"),
    Own("POST /api/v1/notifications/subscriptions", body={"results": {"wxtpl-pay-success": "reject"}}),
    Own("GET /api/v1/bills", ("bill_id", "paid_bill_id")),
    Own("GET /api/v1/appointments", ("appointment_id",)),
    Own("GET /api/v1/waitlist", ("entry_id",)),
    Own("GET /api/v1/credit", ("line_id", "drawdown_id")),
    Own("GET /api/v1/family", ("link_id",)),
    Own("POST /api/v1/notifications/read-all", last=True),
    Own("DELETE /api/v1/ecert", last=True),
]

NAMES_NO_ONE = {
    "POST /api/v1/ecert/bind": "binds the caller's own document, as the e-certificate platform verifies it",
    "GET /api/v1/credit/products": "the public catalogue of credit products",
    "POST /api/v1/credit/applications": "applies for the caller's own line",
    "GET /api/v1/hospitals": "the public catalogue",
    "GET /api/v1/hospitals/{hospital_id}/departments": "the public catalogue",
    "GET /api/v1/departments/{department_id}/doctors": "the public catalogue",
    "GET /api/v1/doctors/{doctor_id}/sessions": "the public catalogue",
    "POST /api/v1/sessions/{session_id}/waitlist": "queues the caller for a public session",
    "POST /api/v1/family/invitations": "the caller invites: a new code of their own",
    "POST /api/v1/family/invitations/accept": "the one-time code is the bearer's proof (test_links)",
    "POST /api/v1/family/relatives": "links a person the platform verifies on the caller's word",
    "POST /api/v1/family/newborns": "links a newborn the platform enrols on the caller's word",
}


async def test_every_patient_operation_has_an_entry_in_the_matrix(app: Litestar) -> None:
    entries = [row.operation for row in NAMES_AN_OBJECT] + [row.operation for row in OWN] + [*NAMES_NO_ONE]
    published = patient_operations(app)

    missing = sorted(published - set(entries))
    gone = sorted(set(entries) - published)
    twice = sorted({e for e in entries if entries.count(e) > 1})

    assert (missing, gone, twice) == ([], [], []), (
        f"patient operations without an entry in the matrix: {missing}; "
        f"entries whose operation is gone: {gone}; entries given twice: {twice}"
    )


async def an_owner_with_a_line(
    client: Client, sandbox: Client, settings: Settings, bank: Client, run_worker: Any
) -> Insured:
    """An employee-insured patient by a name no one else has, who visited the hospital today and
    whose credit line the bank approved."""
    user = f"owner-{uuid.uuid4().hex[:10]}"
    tokens = await login(client, sandbox, settings, "wechat", user)
    id_number = employee_id("330106")
    bound = await bind_ecert(client, tokens, OWNER_NAME, id_number)
    assert bound.status_code == 200, bound.text
    owner = Insured(tokens, bound.json()["cert_no"], "wechat", user, id_number)
    await visit_token(client, owner)
    applied = await apply(client, owner, (await products(client, owner))[0])
    assert applied.status_code == 202, applied.text
    await settle(bank, run_worker)
    return owner


async def arrange(
    client: Client, sandbox: Client, settings: Settings, bank: Client, run_worker: Any
) -> World:
    """The owner's bill, appointment, waitlist entry, notification, line and drawdown; a holder
    linked to them with each grant, one with none, one whose link ended; a stranger."""
    owner = await an_owner_with_a_line(client, sandbox, settings, bank, run_worker)
    paid_bill = await bill_for(client, owner, 25_600)
    assert (await pay_by_credit(client, owner, paid_bill)).status_code == 200
    await settle(bank, run_worker)
    actors = {"owner": owner}
    for name in (*HOLDERS, "stranger"):
        actors[name] = await insured_patient(client, sandbox, settings, visiting=None)
    links = {h: await linked(client, actors[h], owner, manage=h in ("manage", "ended")) for h in HOLDERS}
    await grant(client, links["pay"], actors["pay"], pay=True)
    await grant(client, links["credit"], actors["credit"], credit_cap_fen=50_000)
    ended = await client.post(f"/api/v1/family/links/{links['ended']['id']}/end", headers=owner.headers)
    assert ended.status_code == 200, ended.text

    bill = await new_bill(client, await his_headers(client), owner, ITEMS)
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
    ids = {
        "bill_id": bill["id"],
        "appointment_id": appointment["id"],
        "notification_id": inbox[0]["id"],
        "entry_id": entry.json()["id"],
        "link_id": links["manage"]["id"],
        "drawdown_id": line["drawdowns"][0]["id"],
        "free_session_id": sessions[free["code"]],
    }
    secrets: dict[str, str | int] = {
        **{k: v for k, v in ids.items() if k != "free_session_id"},
        "paid_bill_id": paid_bill["id"],
        "appointment_bill_id": appointment["bill_id"],
        "line_id": line["id"],
        "cert_no": owner.cert_no,
        "id_number": owner.id_number,
        "name": OWNER_NAME,
    }
    knows: dict[str, set[str]] = {a: set() for a in ACTORS if a != "owner"}
    knows["manage"] = {"bill_id", "paid_bill_id", "appointment_id", "appointment_bill_id", "link_id"}
    return World(client, actors, ids, secrets, knows)


async def test_the_matrix_over_every_operation_that_names_the_owners_object(
    client: Client, sandbox_http: Client, settings: Settings, bank_http: Client, run_worker: Any
) -> None:
    matrix = Matrix(await arrange(client, sandbox_http, settings, bank_http, run_worker), NAMES_AN_OBJECT)
    reads = [row for row in OWN if not row.last]

    # The refused first, and everyone's own lists: none of it touches the owner's things.
    await matrix.unchanged_for_the_owner("the refusals", matrix.refusals())
    await matrix.unchanged_for_the_owner("the own lists", matrix.own(reads, ACTORS))
    # Those let in, in the table's order: the reads, then the changes (paid, cancelled, left, the
    # link ended). Refused again after: a refusal does not hang on the state of what it refuses.
    await matrix.let_in()
    await matrix.unchanged_for_the_owner("the refusals once changed", matrix.refusals())
    # Last, what changes the caller's own state (read all, unbind): the others' first.
    for row in (row for row in OWN if row.last):
        await matrix.unchanged_for_the_owner(row.operation, matrix.own([row], ACTORS[1:]))
        await matrix.own([row], ("owner",))

    refused = sum(len(ACTORS) - len(row.allowed) for row in NAMES_AN_OBJECT)
    assert matrix.cells == len(ACTORS) * (len(NAMES_AN_OBJECT) + len(OWN)) + refused
    assert matrix.problems == [], (
        f"the authorization matrix fails in {len(matrix.problems)} of {matrix.cells} cells:\n"
        + "\n".join(matrix.problems)
    )
