"""Linking relatives: an invitation accepted from the relative's own account, a relative without a
phone added by proxy, links ended by either side, and grants given only by whom they concern."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from backend.ecert.tables import InsuredPerson
from backend.family.tables import FamilyInvitation, FamilyLink
from tests.billing.factories import Insured, insured_patient
from tests.helpers import bearer, bind_ecert, face_assertion, login
from tests.identities import employee_id, resident_id

_names = itertools.count(1)


async def invite(client, holder: Insured, relation: str = "PARENT") -> Any:
    return await client.post(
        "/api/v1/family/invitations", json={"relation": relation}, headers=holder.headers
    )


async def accept(client, relative: Insured, code: str, relation: str = "CHILD") -> Any:
    return await client.post(
        "/api/v1/family/invitations/accept",
        json={"code": code, "relation": relation},
        headers=relative.headers,
    )


async def add_relative(
    client, sandbox, holder: Insured, relation: str = "PARENT", *, face: bool = True, **person: Any
) -> Any:
    """Add a relative without a phone, their face scanned on the holder's phone (unless `face=False`)."""
    body = {
        "relation": relation,
        "name": f"测试老人{next(_names)}",
        "id_number": resident_id("330106"),
        **person,
    }
    if face:
        body["face_assertion"] = await face_assertion(sandbox, body["id_number"])
    return await client.post("/api/v1/family/relatives", json=body, headers=holder.headers)


async def family(client, patient: Insured) -> dict[str, Any]:
    answer = await client.get("/api/v1/family", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_a_parent_accepts_their_childs_invitation_and_both_see_the_link(client, sandbox_http, settings):
    child, parent = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]

    invited = await invite(client, child, "PARENT")
    answer = await accept(client, parent, invited.json()["code"], "CHILD")

    assert invited.status_code == 201
    assert (
        invited.json()["qr_svg"].startswith("<?xml")
        and invited.json()["code"] in invited.json()["accept_url"]
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["side"], answer.json()["relation"]) == ("relative", "CHILD")
    mine, theirs = await family(client, child), await family(client, parent)
    assert [(r["relation"], r["linked_by"], r["state"]) for r in mine["relatives"]] == [
        ("PARENT", "INVITATION", "ACTIVE")
    ]
    assert mine["relatives"][0]["grants"] == {
        "manage": False,
        "pay": False,
        "credit_cap_fen": None,
        "kiosk": False,
    }
    assert [h["relation"] for h in theirs["holders"]] == ["CHILD"]
    assert "*" in mine["relatives"][0]["other"]["name"]  # masked
    stored = await FamilyInvitation.select(FamilyInvitation.code_hash).first()
    assert invited.json()["code"] not in str(stored)  # only its digest is kept


async def test_an_invitation_is_refused_when_the_relation_disagrees_used_expired_or_ones_own(
    client, sandbox_http, settings
):
    child, parent, other = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    code = (await invite(client, child, "PARENT")).json()["code"]

    mismatched = await accept(client, parent, code, "SPOUSE")
    own = await accept(client, child, code, "CHILD")
    first = await accept(client, parent, code.lower(), "CHILD")  # typed in lower case: the same code
    again = await accept(client, other, code, "CHILD")
    stale = (await invite(client, child, "SPOUSE")).json()["code"]
    await FamilyInvitation.update(
        {FamilyInvitation.expires_at: datetime.now(UTC) - timedelta(seconds=1)}
    ).where(FamilyInvitation.accepted_at.is_null())
    expired = await accept(client, other, stale, "SPOUSE")
    unknown = await accept(client, other, "NOSUCHCODE", "SPOUSE")

    assert mismatched.status_code == 409 and mismatched.json()["error"]["code"] == "RELATION_MISMATCH"
    assert mismatched.json()["error"]["detail"] == {"field": "relation", "expected": "CHILD"}
    assert own.status_code == 409 and own.json()["error"]["code"] == "FAMILY_SELF"
    assert first.status_code == 201
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVITATION_USED"
    assert expired.status_code == unknown.status_code == 404
    assert await FamilyLink.count() == 1


async def test_a_relative_without_a_phone_is_verified_by_the_platform_and_in_the_holders_care(
    client, sandbox_http, settings
):
    holder = await insured_patient(client, sandbox_http, settings)

    elder = resident_id("330106")
    added = await add_relative(client, sandbox_http, holder, "PARENT", name="测试奶奶", id_number=elder)
    again = await add_relative(client, sandbox_http, holder, "PARENT", name="测试奶奶", id_number=elder)
    unverified = await add_relative(client, sandbox_http, holder, "PARENT", name="张三")

    assert added.status_code == 201, added.text
    assert (added.json()["linked_by"], added.json()["grants"]["manage"]) == ("PROXY", True)
    assert added.json()["other"]["insurance_type"] == "resident"
    assert again.status_code == 409 and again.json()["error"]["code"] == "FAMILY_LINK_EXISTS"
    assert unverified.status_code in (403, 422) and unverified.json()["error"]["code"].startswith("ECERT_")
    assert await FamilyLink.count() == 1


async def test_a_relative_with_an_account_of_their_own_is_invited_rather_than_added(
    client, sandbox_http, settings
):
    holder, relative = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]

    answer = await add_relative(
        client, sandbox_http, holder, "SPOUSE", name="测试配偶", id_number=relative.id_number
    )

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "RELATIVE_HAS_ACCOUNT"


async def test_either_side_ends_a_link_and_it_stays_ended(client, sandbox_http, settings):
    child, parent, stranger = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    code = (await invite(client, child, "PARENT")).json()["code"]
    link = (await accept(client, parent, code)).json()

    refused = await client.post(f"/api/v1/family/links/{link['id']}/end", headers=stranger.headers)
    ended = await client.post(f"/api/v1/family/links/{link['id']}/end", headers=parent.headers)
    again = await client.post(f"/api/v1/family/links/{link['id']}/end", headers=child.headers)
    grant = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"pay": True}, headers=child.headers
    )

    assert refused.status_code == 404 and refused.json()["error"]["code"] == "FAMILY_LINK_NOT_FOUND"
    assert ended.status_code == again.status_code == 200
    assert ended.json()["state"] == "ENDED" and again.json()["ended_at"] == ended.json()["ended_at"]
    assert grant.status_code == 409 and grant.json()["error"]["code"] == "FAMILY_LINK_ENDED"
    relinked = await accept(client, parent, (await invite(client, child, "PARENT")).json()["code"])
    assert relinked.status_code == 201  # a new link, the old one kept as it ended


async def test_each_grant_is_given_by_whom_it_concerns(client, sandbox_http, settings):
    child = await insured_patient(client, sandbox_http, settings, insurance="employee")
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    link = (await accept(client, parent, (await invite(client, child, "PARENT")).json()["code"])).json()
    url = f"/api/v1/family/links/{link['id']}/grants"

    holder_manages = await client.put(url, json={"manage": True}, headers=child.headers)
    relative_pays = await client.put(url, json={"pay": True}, headers=parent.headers)
    manage = await client.put(url, json={"manage": True}, headers=parent.headers)
    pay = await client.put(url, json={"pay": True, "credit_cap_fen": 50000}, headers=child.headers)
    relative_kiosk = await client.put(url, json={"kiosk": True}, headers=parent.headers)
    bad_cap = await client.put(url, json={"credit_cap_fen": 0}, headers=child.headers)

    assert holder_manages.status_code == 403 and holder_manages.json()["error"]["detail"]["field"] == "manage"
    assert relative_pays.status_code == 403 and relative_pays.json()["error"]["code"] == "GRANT_NOT_YOURS"
    assert manage.json()["grants"] == {"manage": True, "pay": False, "credit_cap_fen": None, "kiosk": False}
    assert pay.json()["grants"] == {"manage": True, "pay": True, "credit_cap_fen": 50000, "kiosk": False}
    assert relative_kiosk.status_code == 403 and relative_kiosk.json()["error"]["detail"]["field"] == "kiosk"
    assert bad_cap.status_code == 400 and bad_cap.json()["error"]["detail"]["field"] == "credit_cap_fen"
    cleared = await client.put(url, json={"credit_cap_fen": None}, headers=child.headers)
    assert cleared.json()["grants"]["credit_cap_fen"] is None
    # Family mutual aid spends an employee's personal account: a resident holder cannot grant it.
    back = (
        await accept(client, child, (await invite(client, parent, "CHILD")).json()["code"], "PARENT")
    ).json()
    resident_pays = await client.put(
        f"/api/v1/family/links/{back['id']}/grants", json={"pay": True}, headers=parent.headers
    )
    assert (
        resident_pays.status_code == 422
        and resident_pays.json()["error"]["code"] == "FAMILY_PAY_EMPLOYEE_ONLY"
    )


async def test_relations_beyond_the_near_family_need_the_regions_policy(
    client, sandbox_http, settings, runtime
):
    holder = await insured_patient(client, sandbox_http, settings, region="330106")

    refused = await invite(client, holder, "SIBLING")
    family_settings = msgspec.structs.replace(settings.family, extended_regions="310100,330100")
    runtime.settings = msgspec.structs.replace(settings, family=family_settings)
    try:
        allowed = await invite(client, holder, "GRANDPARENT")
    finally:
        runtime.settings = settings

    assert refused.status_code == 422 and refused.json()["error"]["code"] == "RELATION_NOT_ALLOWED"
    assert allowed.status_code == 201


async def test_a_holder_links_at_most_six_relatives_even_at_once(client, sandbox_http, settings):
    holder = await insured_patient(client, sandbox_http, settings)
    for _ in range(3):
        assert (await add_relative(client, sandbox_http, holder, "CHILD")).status_code == 201

    # Five at once (the platform's attempts in flight are limited like binds): three fit.
    answers = await asyncio.gather(*(add_relative(client, sandbox_http, holder, "CHILD") for _ in range(5)))

    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [409] * 2, [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"FAMILY_FULL"}
    assert await FamilyLink.count() == 6


async def test_bad_input_names_its_field_and_writes_nothing(client, sandbox_http, settings):
    holder = await insured_patient(client, sandbox_http, settings)

    unknown = await invite(client, holder, "COUSIN")
    bad_number = await add_relative(client, sandbox_http, holder, "CHILD", face=False, id_number="123")
    valid = employee_id("330106")
    wrong_check = "1" if valid[-1] == "0" else "0"  # any check character but the right one
    bad_check = await add_relative(
        client, sandbox_http, holder, "CHILD", face=False, id_number=valid[:-1] + wrong_check
    )

    assert unknown.status_code == 400 and unknown.json()["error"]["detail"]["field"] == "relation"
    assert bad_number.status_code == 400 and bad_number.json()["error"]["detail"]["field"] == "id_number"
    assert bad_check.status_code in (400, 422) and bad_check.json()["error"]["detail"]["field"] == "id_number"
    assert await FamilyLink.count() == 0 and await FamilyInvitation.count() == 0


async def test_a_link_is_the_holders_person_not_their_account(client, sandbox_http, settings):
    """The holder unbinds their e-certificate and someone else binds theirs to the same account:
    neither the account nor the newcomer inherits the relatives."""
    child, parent = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    code = (await invite(client, child, "PARENT")).json()["code"]
    link = (await accept(client, parent, code)).json()
    await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"manage": True}, headers=parent.headers
    )
    pending = (await invite(client, child, "SPOUSE")).json()["code"]

    assert (await client.delete("/api/v1/ecert", headers=child.headers)).status_code == 204
    unbound = await family(client, child)
    rebound = await bind_ecert(client, child.tokens, "测试新人", resident_id("330106"))
    assert rebound.status_code == 200, rebound.text
    newcomer = await family(client, child)
    grants = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"pay": True}, headers=child.headers
    )
    other = await insured_patient(client, sandbox_http, settings)
    lapsed = await accept(client, other, pending, "SPOUSE")

    assert unbound == {"relatives": [], "holders": []}
    assert newcomer == {"relatives": [], "holders": []}
    assert grants.status_code == 404 and grants.json()["error"]["code"] == "FAMILY_LINK_NOT_FOUND"
    assert lapsed.status_code == 404 and lapsed.json()["error"]["code"] == "INVITATION_NOT_FOUND"


async def test_an_adult_relative_is_added_only_with_their_face_a_young_child_without(
    client, sandbox_http, settings
):
    holder = await insured_patient(client, sandbox_http, settings)
    child = resident_id("330106", born=f"{datetime.now(UTC).year - 5}0101")

    faceless = await add_relative(client, sandbox_http, holder, "PARENT", face=False)
    adult_child = await add_relative(client, sandbox_http, holder, "CHILD", face=False)
    young = await add_relative(
        client, sandbox_http, holder, "CHILD", face=False, name="测试宝宝", id_number=child
    )

    assert faceless.status_code == 422 and faceless.json()["error"]["code"] == "FACE_REQUIRED"
    assert faceless.json()["error"]["detail"]["field"] == "face_assertion"
    assert adult_child.status_code == 422 and adult_child.json()["error"]["code"] == "FACE_REQUIRED"
    assert young.status_code == 201, young.text
    assert await FamilyLink.count() == 1


async def test_a_relative_added_by_proxy_who_binds_an_account_decides_on_manage(
    client, sandbox_http, settings
):
    holder = await insured_patient(client, sandbox_http, settings)
    elder = resident_id("330106")
    link = (
        await add_relative(client, sandbox_http, holder, "PARENT", name="测试爷爷", id_number=elder)
    ).json()
    tokens = await login(client, sandbox_http, settings, "wechat", "grandpa-phone")
    assert (await bind_ecert(client, tokens, "测试爷爷", elder)).status_code == 200

    revoked = await client.put(
        f"/api/v1/family/links/{link['id']}/grants",
        json={"manage": False},
        headers=bearer(tokens["access_token"]),
    )

    assert revoked.status_code == 200 and revoked.json()["grants"]["manage"] is False
    assert (await family(client, holder))["relatives"][0]["grants"]["manage"] is False


async def test_proxy_checks_are_counted_granted_or_refused_and_a_refusal_writes_nothing(
    client, sandbox_http, settings
):
    holder = await insured_patient(client, sandbox_http, settings)
    others = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    people = await InsuredPerson.count()

    answers = [
        await add_relative(client, sandbox_http, holder, "SPOUSE", name="测试某人", id_number=o.id_number)
        for o in others
    ]
    answers += [await add_relative(client, sandbox_http, holder, "PARENT", name="张三") for _ in range(8)]
    over = await add_relative(client, sandbox_http, holder, "PARENT")

    assert {a.json()["error"]["code"] for a in answers[:2]} == {"RELATIVE_HAS_ACCOUNT"}
    assert over.status_code == 429 and over.json()["error"]["code"] == "FAMILY_PROXY_LIMITED"
    assert int(over.headers["retry-after"]) > 0
    assert await InsuredPerson.count() == people  # nobody new recorded for the refusals
    assert await FamilyLink.count() == 0
