"""Family mutual aid (家庭共济): a holder's personal account pays what is left of a relative's
in-scope self part, under a live link granting `pay`; its own journal kind in the books; given
back by refunds; never below zero, and never twice for one bill, whoever pays at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.audit import full_audit
from backend.billing import jobs
from backend.billing.tables import Bill, CashPayment
from backend.ecert.tables import InsuredPerson
from backend.family.tables import FamilyGrantChange
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from tests.billing.factories import (
    WITH_CT,
    Insured,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
    refund,
)
from tests.family.test_acting_for import linked
from tests.helpers import inject_fault

Client = Any


async def grant(client: Client, link: dict[str, Any], who: Insured, **grants: Any) -> None:
    answer = await client.put(f"/api/v1/family/links/{link['id']}/grants", json=grants, headers=who.headers)
    assert answer.status_code == 200, answer.text


async def aiding(client, sandbox_http, settings, *, parent_insurance: str = "resident"):
    """A child (employee-insured) looking after a parent who granted `manage`, with `pay` given."""
    child = await insured_patient(client, sandbox_http, settings)
    parent = await insured_patient(client, sandbox_http, settings, insurance=parent_insurance)
    link = await linked(client, child, parent, manage=True)
    await grant(client, link, child, pay=True)
    return child, parent, link


async def presettle(client: Client, who: Insured, bill_id: str, **body: Any) -> dict[str, Any]:
    answer = await client.post(f"/api/v1/bills/{bill_id}/presettle", json=body, headers=who.headers)
    assert answer.status_code == 200, answer.text
    split: dict[str, Any] = answer.json()
    return split


async def balance_of(patient: Insured) -> int:
    """The patient's personal account in the books (opened by their first payment)."""
    row = await InsuredPerson.select(InsuredPerson.id).where(InsuredPerson.cert_no == patient.cert_no).first()
    assert row is not None
    return await ledger.balance(ledger.personal_account(row["id"]))


async def test_a_child_pays_a_parents_in_scope_self_part_from_their_own_personal_account(
    client, sandbox_http, settings, run_worker
):
    child, parent, _ = await aiding(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)
    own_split = await presettle(client, child, bill["id"])
    before = (await presettle(client, child, bill["id"], family_account=True))["family_account_balance_fen"]

    split = await presettle(client, child, bill["id"], family_account=True)
    started = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{started.json()['out_trade_no']}")).json()
    await post_notification(
        client, "wechat", await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    )
    await run_worker()

    # The parent is resident-insured (no personal account): the child's account pays the
    # deductible and co-payment, never the class C item or class B's self-first share.
    assert own_split["family_account_fen"] == 0 and own_split["family_account_balance_fen"] is None
    assert split["fund_fen"] == own_split["fund_fen"]
    in_scope_self = sum(i["deductible_fen"] + i["copay_fen"] for i in split["items"])
    assert 0 < split["family_account_fen"] == min(in_scope_self, before)
    assert split["cash_fen"] == own_split["cash_fen"] - split["family_account_fen"]
    for item in split["items"]:
        assert item["family_account_fen"] <= item["deductible_fen"] + item["copay_fen"]
        if item["category"] == "C":
            assert item["family_account_fen"] == 0 and "family mutual aid" not in item["rule"]
    assert started.status_code == 200, started.text
    assert started.json()["family_account_fen"] == split["family_account_fen"]
    assert started.json()["cash_fen"] == split["cash_fen"]
    paid = (await client.get(f"/api/v1/bills/{bill['id']}", headers=parent.headers)).json()
    assert paid["state"] == "PAID" and paid["family_account_fen"] == split["family_account_fen"]
    assert await balance_of(child) == before - split["family_account_fen"]
    kinds = await Journal.select(Journal.kind).where(Journal.reference == f"bill:{bill['id']}")
    assert sorted(k["kind"] for k in kinds) == ["bill.cash_paid", "bill.family_aid", "bill.settled"]
    # WeChat Pay is told the child pays for a relative, and whom: the name encrypted to it.
    med_ins = order["med_ins"]
    assert med_ins["pay_for_relatives"] is True
    assert med_ins["relative"]["id_digest"] == hashlib.md5(parent.id_number.upper().encode()).hexdigest()  # noqa: S324  # WeChat's digest
    assert med_ins["relative"]["card_type"] == "ID_CARD" and order["relative_name"].startswith("测试")
    assert med_ins["med_ins_self_fee"] == split["personal_account_fen"] + split["family_account_fen"]


async def test_the_relatives_own_personal_account_pays_first(client, sandbox_http, settings):
    child, parent, _ = await aiding(client, sandbox_http, settings, parent_insurance="employee")
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)

    alone = await presettle(client, child, bill["id"])
    aided = await presettle(client, child, bill["id"], family_account=True)
    started = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")

    assert alone["personal_account_fen"] > 0
    assert aided["personal_account_fen"] == alone["personal_account_fen"]
    assert aided["family_account_fen"] == sum(
        max(0, i["deductible_fen"] + i["copay_fen"] - i["personal_account_fen"]) for i in aided["items"]
    )
    assert aided["cash_fen"] == alone["cash_fen"] - aided["family_account_fen"]
    assert started.status_code == 200, started.text


async def test_a_refund_gives_the_mutual_aid_back_to_the_holders_account(
    client, sandbox_http, settings, run_worker
):
    child, parent, _ = await aiding(client, sandbox_http, settings)
    his = await his_headers(client)
    bill = await new_bill(client, his, parent, WITH_CT)
    before = (await presettle(client, child, bill["id"], family_account=True))["family_account_balance_fen"]
    started = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    await post_notification(
        client, "wechat", await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    )
    await run_worker()
    aid = started.json()["family_account_fen"]

    first = await refund(client, his, bill["id"], amount_fen=started.json()["cash_fen"] + 1)
    await run_worker()
    rest = await refund(client, his, bill["id"])
    await run_worker()

    assert first.status_code == 201, first.text
    parts = ("fund_fen", "personal_account_fen", "family_account_fen", "cash_fen")
    assert sum(first.json()[p] for p in parts) == first.json()["amount_fen"]
    assert 0 < first.json()["family_account_fen"] < aid  # its share, given back to the child's account
    assert rest.status_code == 201, rest.text
    assert first.json()["family_account_fen"] + rest.json()["family_account_fen"] == aid
    assert await balance_of(child) == before
    bill_now = (await client.get(f"/api/v1/bills/{bill['id']}", headers=child.headers)).json()
    assert bill_now["state"] == "REFUNDED"
    kinds = {j["kind"] for j in await Journal.select(Journal.kind)}
    assert "bill.family_aid_refunded" in kinds


async def test_mutual_aid_needs_a_relatives_bill_and_a_live_pay_grant(client, sandbox_http, settings):
    child, parent, link = await aiding(client, sandbox_http, settings)
    his = await his_headers(client)
    own_bill = await new_bill(client, his, child)
    bill = await new_bill(client, his, parent)

    own = await pay(client, child, own_bill["id"], family_account=True, cash_method="wechat")
    await grant(client, link, child, pay=False)
    withdrawn = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    shown = await client.post(
        f"/api/v1/bills/{bill['id']}/presettle", json={"family_account": True}, headers=child.headers
    )
    await grant(client, link, child, pay=True)
    await client.post(f"/api/v1/family/links/{link['id']}/end", headers=parent.headers)
    ended = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")

    for answer in (own, withdrawn, shown):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "FAMILY_ACCOUNT_UNAVAILABLE"
        assert answer.json()["error"]["detail"]["field"] == "family_account"
    assert ended.status_code == 404 and ended.json()["error"]["code"] == "BILL_NOT_FOUND"
    assert {b["state"] for b in await Bill.select(Bill.state)} == {"CREATED"}
    assert await CashPayment.count() == 0
    versions = await FamilyGrantChange.select(
        FamilyGrantChange.version, FamilyGrantChange.grant_pay, FamilyGrantChange.ended
    ).order_by(FamilyGrantChange.id)
    # Made; manage given; pay given, withdrawn, given again; ended: each a version of the link.
    assert [(v["version"], v["grant_pay"], v["ended"]) for v in versions] == [
        (1, False, False),
        (2, False, False),
        (3, True, False),
        (4, False, False),
        (5, True, False),
        (6, True, True),
    ]


async def test_the_holders_account_never_goes_below_zero_whoever_pays_at_once(client, sandbox_http, settings):
    child = await insured_patient(client, sandbox_http, settings)
    parents = [await insured_patient(client, sandbox_http, settings, insurance="resident") for _ in range(2)]
    his = await his_headers(client)
    for parent in parents:
        link = await linked(client, child, parent, manage=True)
        await grant(client, link, child, pay=True)
    expensive = [{**WITH_CT[-1], "quantity": 40}]  # each bill's self part is above the whole balance
    bills = [await new_bill(client, his, parent, expensive) for parent in parents for _ in range(3)]
    own = [await new_bill(client, his, child, expensive) for _ in range(2)]
    opening = (await presettle(client, child, bills[0]["id"], family_account=True))[
        "family_account_balance_fen"
    ]

    answers = await asyncio.gather(
        *(pay(client, child, b["id"], family_account=True, cash_method="wechat") for b in bills),
        *(pay(client, child, b["id"], cash_method="wechat") for b in own),
    )

    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers if a.status_code != 200]
    spent = sum(a.json()["family_account_fen"] + a.json()["personal_account_fen"] for a in answers[:6]) + sum(
        a.json()["personal_account_fen"] for a in answers[6:]
    )
    assert spent == opening and await balance_of(child) == 0  # all of it, and not a fen more


async def test_two_holders_paying_one_relatives_bill_at_once_make_one_payment(client, sandbox_http, settings):
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    children = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    for child in children:
        code = (
            await client.post(
                "/api/v1/family/invitations", json={"relation": "PARENT"}, headers=child.headers
            )
        ).json()["code"]
        link = (
            await client.post(
                "/api/v1/family/invitations/accept",
                json={"code": code, "relation": "CHILD"},
                headers=parent.headers,
            )
        ).json()
        await grant(client, link, parent, manage=True)
        await grant(client, link, child, pay=True)
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)

    answers = await asyncio.gather(
        *(pay(client, c, bill["id"], family_account=True, cash_method="wechat") for c in children)
    )

    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["error"]["code"] == "BILL_PAYMENT_IN_PROGRESS"
    assert await CashPayment.count() == 1
    aid = await Journal.count().where(Journal.kind == "bill.family_aid")
    assert aid == 1


async def test_the_audit_finds_mutual_aid_paid_without_a_live_pay_grant(client, sandbox_http, settings):
    child, parent, link = await aiding(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)
    assert (
        await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    ).status_code == 200
    granted = await FamilyGrantChange.select().where(FamilyGrantChange.grant_pay == True).first()  # noqa: E712

    await FamilyGrantChange.update({FamilyGrantChange.grant_pay: False}).where(
        FamilyGrantChange.id == granted["id"]
    )
    problems, _ = await full_audit()
    await FamilyGrantChange.update({FamilyGrantChange.grant_pay: True}).where(
        FamilyGrantChange.id == granted["id"]
    )

    assert any(f"bill:{bill['id']}" in p and "granting `pay`" in p for p in problems), problems
    assert (await full_audit())[0] == []
    assert link["id"] == (await Bill.select(Bill.family_link_id).first())["family_link_id"]


async def test_a_payment_that_never_completes_gives_the_mutual_aid_back(
    client, sandbox_http, settings, runtime, run_worker
):
    child, parent, _ = await aiding(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)
    before = (await presettle(client, child, bill["id"], family_account=True))["family_account_balance_fen"]
    started = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    paying = await balance_of(child)
    past = datetime.now(UTC) - timedelta(hours=1)
    await Bill.update({Bill.paying_at: past, Bill.created_at: past, Bill.expires_at: past}).where(
        Bill.id == bill["id"]
    )

    await runtime.redis.flushdb()  # its deferred jobs gone: the sweeper finds the bill
    assert await jobs.sweep_bills(runtime) == 1
    await run_worker()

    assert started.json()["family_account_fen"] > 0
    assert paying == before - started.json()["family_account_fen"]
    assert (await Bill.select(Bill.state).first())["state"] == "CLOSED"
    assert await balance_of(child) == before
    assert await Journal.count().where(Journal.kind == "bill.family_aid_reversed") == 1


async def test_a_repeated_channel_order_for_a_relative_is_the_same_order(client, sandbox_http, settings):
    child, parent, _ = await aiding(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), parent, WITH_CT)
    # The insurance order is taken, but its answers come too late: the payment is left to resume.
    await inject_fault(sandbox_http, partner="wechatpay", api="med-ins", delay_ms=2500, times=5)

    lost = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")
    await sandbox_http.delete("/_sandbox/faults")
    again = await pay(client, child, bill["id"], family_account=True, cash_method="wechat")

    assert lost.status_code == 503, lost.text  # the channel's answer never came
    assert again.status_code == 200, again.text  # the same order, its relative sealed once
    sealed = (await CashPayment.select(CashPayment.relative).first())["relative"]
    order = (await sandbox_http.get(f"/_sandbox/pay/wechat/orders/{again.json()['out_trade_no']}")).json()
    assert order["med_ins"]["relative"] == json.loads(sealed)
