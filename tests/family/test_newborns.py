"""A newborn added by a parent: the sandbox e-certificate platform enrols the baby in resident
insurance, and the baby is the parent's CHILD in their care; a bill of the baby's is the parent's
to see and pay."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec

from backend.billing.tables import Bill
from backend.ecert.tables import InsuredPerson
from backend.family.tables import FamilyLink
from tests.billing.factories import (
    ITEMS,
    Insured,
    his_headers,
    insured_patient,
    key,
    pay,
    payer_pays,
    post_notification,
)
from tests.family.test_links import family
from tests.helpers import bearer, inject_fault, sandbox_calls, terminal_token

# The sandbox platform remembers newborns for the whole test session: a fresh number each time.
_serial = itertools.count(random.randrange(10**8))


def birth_certificate() -> str:
    """A 出生医学证明编号: a letter and 9 digits."""
    return f"O{next(_serial) % 10**9:09d}"


def days_ago(days: int) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


async def add_newborn(client: httpx.AsyncClient, parent: Insured, **body: Any) -> httpx.Response:
    body = {
        "birth_certificate_no": birth_certificate(),
        "name": "测试宝宝",
        "birth_date": days_ago(10),
        **body,
    }
    return await client.post("/api/v1/family/newborns", json=body, headers=parent.headers)


async def enrolments(sandbox: httpx.AsyncClient) -> int:
    return len(await sandbox_calls(sandbox, "ecert", "enrol_newborn"))


async def test_a_newborn_is_enrolled_and_is_the_parents_child_in_their_care(
    client, sandbox_http, settings, runtime
):
    parent = await insured_patient(client, sandbox_http, settings, region="330106")
    number = birth_certificate()

    added = await add_newborn(client, parent, birth_certificate_no=number, name="测试小宝")
    again = await add_newborn(client, parent, birth_certificate_no=number.lower(), name="测试小宝")

    assert added.status_code == 201, added.text
    link = added.json()
    assert (link["side"], link["relation"], link["linked_by"], link["state"]) == (
        "holder",
        "CHILD",
        "NEWBORN",
        "ACTIVE",
    )
    assert link["grants"] == {"manage": True, "pay": False, "credit_cap_fen": None, "kiosk": False}
    assert link["other"] == {
        "name": "测**宝",
        "id_type": "birth_certificate",
        "id_number": number[0] + "*******" + number[-2:],
        "insurance_type": "resident",
        "region_code": "330100",  # the parent's
    }
    assert again.status_code == 200 and again.json() == link  # the same link, nothing new
    assert (await family(client, parent))["relatives"] == [link]
    baby = await InsuredPerson.select().where(InsuredPerson.id_type == "birth_certificate").first()
    assert baby["id_digest"] == runtime.vault.digest(f"birth_certificate:{number}")
    assert baby["opening_balance_fen"] == 0  # resident insurance: no personal account
    assert number not in baby["id_number_enc"] and "小宝" not in baby["name_enc"]
    assert await FamilyLink.count() == 1


async def test_both_parents_link_the_same_baby(client, sandbox_http, settings):
    mother, father = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    number = birth_certificate()

    by_mother = await add_newborn(client, mother, birth_certificate_no=number)
    by_father = await add_newborn(client, father, birth_certificate_no=number)

    assert by_mother.status_code == by_father.status_code == 201, by_father.text
    assert by_mother.json()["id"] != by_father.json()["id"]
    links = await FamilyLink.select(FamilyLink.holder_id, FamilyLink.relative_id)
    assert len({link["holder_id"] for link in links}) == 2
    assert len({link["relative_id"] for link in links}) == 1  # one baby
    assert await InsuredPerson.count().where(InsuredPerson.id_type == "birth_certificate") == 1


async def test_bad_input_names_its_field_and_nothing_is_asked_or_written(client, sandbox_http, settings):
    parent = await insured_patient(client, sandbox_http, settings)
    people = await InsuredPerson.count()
    tomorrow = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()

    answers = {
        "birth_certificate_no": await add_newborn(client, parent, birth_certificate_no="123456789"),
        "name": await add_newborn(client, parent, name=" 宝宝"),
        "birth_date": await add_newborn(client, parent, birth_date=tomorrow),
        "birth_date ": await add_newborn(client, parent, birth_date="31/12/2025"),
    }

    for field, answer in answers.items():
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
        assert answer.json()["error"]["detail"]["field"] == field.strip()
    assert answers["birth_certificate_no"].status_code == answers["birth_date"].status_code == 422
    assert await enrolments(sandbox_http) == 0
    assert await FamilyLink.count() == 0 and await InsuredPerson.count() == people


async def test_the_platforms_refusals_are_named_and_record_nobody(client, sandbox_http, settings):
    mother, stranger = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    number = birth_certificate()
    assert (await add_newborn(client, mother, birth_certificate_no=number)).status_code == 201
    people = await InsuredPerson.count()

    too_old = await add_newborn(client, stranger, birth_date=days_ago(400))
    other_name = await add_newborn(client, stranger, birth_certificate_no=number, name="测试别人")
    await inject_fault(sandbox_http, partner="ecert", api="enrol_newborn", times=1, code="E2204")
    unknown_parent = await add_newborn(client, stranger)
    await inject_fault(sandbox_http, partner="ecert", api="enrol_newborn", times=3, http_status=503)
    down = await add_newborn(client, stranger)

    assert too_old.status_code == 422 and too_old.json()["error"]["code"] == "ECERT_NEWBORN_OUT_OF_WINDOW"
    assert too_old.json()["error"]["detail"]["field"] == "birth_date"
    assert other_name.status_code == 422 and other_name.json()["error"]["code"] == "ECERT_NEWBORN_MISMATCH"
    assert other_name.json()["error"]["detail"]["field"] == "birth_certificate_no"
    assert unknown_parent.status_code == 422
    assert unknown_parent.json()["error"]["code"] == "ECERT_GUARDIAN_NOT_INSURED"
    assert down.status_code == 503 and down.json()["error"]["code"] == "PARTNER_UNAVAILABLE"
    assert await InsuredPerson.count() == people
    assert await FamilyLink.count() == 1  # the mother's only


async def test_a_full_family_is_refused_before_the_platform_is_asked(client, sandbox_http, settings, runtime):
    parent = await insured_patient(client, sandbox_http, settings)
    number = birth_certificate()
    runtime.settings = msgspec.structs.replace(
        settings, family=msgspec.structs.replace(settings.family, max_relatives=1)
    )
    try:
        first = await add_newborn(client, parent, birth_certificate_no=number)
        twin = await add_newborn(client, parent)
        asked = await enrolments(sandbox_http)
        again = await add_newborn(client, parent, birth_certificate_no=number)
    finally:
        runtime.settings = settings

    assert first.status_code == 201
    assert twin.status_code == 409 and twin.json()["error"]["code"] == "FAMILY_FULL"
    assert asked == 1  # the twin was refused here, the platform never asked
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # full, yet the same link
    assert await FamilyLink.count() == 1


async def test_a_newborns_bill_is_seen_and_paid_by_the_parents_account(
    client, sandbox_http, settings, run_worker
):
    parent = await insured_patient(client, sandbox_http, settings)
    link = (await add_newborn(client, parent)).json()
    granted = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"pay": True}, headers=parent.headers
    )
    assert granted.status_code == 200, granted.text
    code = await client.get(f"/api/v1/family/links/{link['id']}/qrcode", headers=parent.headers)
    terminal = bearer(await terminal_token(client))
    visit = await client.post(
        "/api/v1/partner/ecert/decode", json={"qr": code.json()["payload"]}, headers=terminal
    )
    assert visit.status_code == 200, visit.text
    baby = (
        await InsuredPerson.select(InsuredPerson.cert_no)
        .where(InsuredPerson.id_type == "birth_certificate")
        .first()
    )
    created = await client.post(
        "/api/v1/partner/bills",
        json={"order_type": "DIAG", "cert_no": baby["cert_no"], "items": ITEMS},
        headers={**await his_headers(client), **key()},
    )
    assert created.status_code == 201, created.text
    bill = created.json()

    listed = (await client.get("/api/v1/bills", headers=parent.headers)).json()
    started = await pay(client, parent, bill["id"], family_account=True, cash_method="wechat")
    order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{started.json()['out_trade_no']}")).json()
    await post_notification(
        client, "wechat", await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    )
    await run_worker()

    assert [b["id"] for b in listed["items"]] == [bill["id"]]
    assert started.status_code == 200, started.text
    paid = await Bill.select(Bill.state, Bill.family_account_fen).first()
    assert paid["state"] == "PAID"
    # The baby's resident insurance has no personal account: the parent's pays the self part.
    assert paid["family_account_fen"] == started.json()["family_account_fen"] > 0
    assert order["med_ins"]["pay_for_relatives"] is True and order["relative_name"] == "测试宝宝"
    assert order["med_ins"]["relative"]["card_type"] == "HOUSEHOLD_REGISTRATION"
