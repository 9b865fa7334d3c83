"""A relative's QR code on the holder's phone: issued under a live link that grants `manage`,
decoded by a hospital's terminal into the relative's visit, and void once the link stops granting it."""

from __future__ import annotations

from typing import Any

import httpx

from backend.ecert.tables import QrCode, Visit
from tests.billing.factories import Insured, insured_patient
from tests.family.test_acting_for import linked
from tests.family.test_links import add_relative
from tests.helpers import bearer, terminal_token
from tests.identities import resident_id


async def relative_code(client: httpx.AsyncClient, holder: Insured, link_id: int, fmt: str = "json") -> Any:
    return await client.get(f"/api/v1/family/links/{link_id}/qrcode?format={fmt}", headers=holder.headers)


async def decode(client: httpx.AsyncClient, payload: str) -> httpx.Response:
    terminal = bearer(await terminal_token(client))
    return await client.post("/api/v1/partner/ecert/decode", json={"qr": payload}, headers=terminal)


async def test_the_holder_shows_the_relatives_code_and_a_terminal_opens_the_relatives_visit(
    client, sandbox_http, settings
):
    holder = await insured_patient(client, sandbox_http, settings, visiting=None)
    link = (
        await add_relative(client, sandbox_http, holder, "PARENT", name="测试外婆", id_number=resident_id())
    ).json()

    code = await relative_code(client, holder, link["id"])
    picture = await relative_code(client, holder, link["id"], "svg")
    superseded = await decode(client, code.json()["payload"])  # the picture's code is newer
    fresh = await relative_code(client, holder, link["id"])
    visit = await decode(client, fresh.json()["payload"])

    assert code.status_code == 200 and code.headers["cache-control"] == "no-store"
    assert 0 < code.json()["refresh_in"] < 60 and code.json()["payload"].startswith("MPQR1.")
    assert picture.headers["content-type"].startswith("image/svg+xml")
    assert superseded.status_code == 409 and superseded.json()["error"]["code"] == "ECERT_QR_SUPERSEDED"
    assert visit.status_code == 200, visit.text
    assert visit.json()["patient"] == link["other"]  # the relative's visit, not the holder's
    opened = await Visit.select(Visit.insured_id).first()
    issued = await QrCode.select(QrCode.insured_id, QrCode.link_id, QrCode.binding_id).where(
        QrCode.used_at.is_not_null()
    )
    assert issued == [{"insured_id": opened["insured_id"], "link_id": link["id"], "binding_id": None}]


async def test_a_holders_code_of_a_relative_voids_the_relatives_own(client, sandbox_http, settings):
    child, parent = [await insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(2)]
    link = await linked(client, child, parent, manage=True)

    own = (await client.get("/api/v1/ecert/qrcode", headers=parent.headers)).json()["payload"]
    shown = (await relative_code(client, child, link["id"])).json()["payload"]

    refused = await decode(client, own)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "ECERT_QR_SUPERSEDED"
    assert (await decode(client, shown)).status_code == 200


async def test_an_ended_link_issues_no_code_and_voids_one_issued_before(client, sandbox_http, settings):
    holder = await insured_patient(client, sandbox_http, settings, visiting=None)
    link = (await add_relative(client, sandbox_http, holder, "PARENT")).json()
    payload = (await relative_code(client, holder, link["id"])).json()["payload"]

    await client.post(f"/api/v1/family/links/{link['id']}/end", headers=holder.headers)
    issued = await relative_code(client, holder, link["id"])
    decoded = await decode(client, payload)

    assert issued.status_code == 404 and issued.json()["error"]["code"] == "FAMILY_LINK_NOT_FOUND"
    assert decoded.status_code == 410 and decoded.json()["error"]["code"] == "ECERT_QR_EXPIRED"
    assert await Visit.count() == 0


async def test_manage_taken_back_issues_no_code_and_voids_one_issued_before(client, sandbox_http, settings):
    child, parent = [await insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(2)]
    link = await linked(client, child, parent, manage=True)
    payload = (await relative_code(client, child, link["id"])).json()["payload"]

    revoked = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"manage": False}, headers=parent.headers
    )
    issued = await relative_code(client, child, link["id"])
    decoded = await decode(client, payload)

    assert revoked.status_code == 200
    assert issued.status_code == 404 and issued.json()["error"]["code"] == "FAMILY_LINK_NOT_FOUND"
    assert decoded.status_code == 410 and decoded.json()["error"]["code"] == "ECERT_QR_EXPIRED"
    assert await Visit.count() == 0


async def test_only_the_holder_of_a_link_that_grants_manage_gets_a_code(client, sandbox_http, settings):
    child, parent, stranger = [
        await insured_patient(client, sandbox_http, settings, visiting=None) for _ in range(3)
    ]
    managed = await linked(client, child, parent, manage=True)
    unmanaged = await linked(client, stranger, parent, manage=False)

    answers = [
        await relative_code(client, stranger, managed["id"]),  # someone else's link
        await relative_code(client, parent, managed["id"]),  # the relative's side of it
        await relative_code(client, stranger, unmanaged["id"]),  # theirs, without `manage`
        await relative_code(client, child, 2**31 - 1),  # no such link
    ]

    for answer in answers:
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "FAMILY_LINK_NOT_FOUND"
    assert await QrCode.count() == 0
