"""What `manage` opens: a holder sees and pays the bills of a relative who granted it, and books
for them; without the grant, or once the link has ended, the relative's things are 404."""

from __future__ import annotations

from typing import Any

from backend.billing.tables import Bill
from backend.notify.tables import Notification
from tests.billing.factories import (
    ITEMS,
    Insured,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
)
from tests.booking.arrange import book, one_session, pay_fee
from tests.family.test_links import accept, invite


async def linked(client, holder: Insured, relative: Insured, *, manage: bool) -> dict[str, Any]:
    """The holder invites their parent, who accepts and, if `manage`, grants it."""
    code = (await invite(client, holder, "PARENT")).json()["code"]
    link: dict[str, Any] = (await accept(client, relative, code, "CHILD")).json()
    if manage:
        granted = await client.put(
            f"/api/v1/family/links/{link['id']}/grants", json={"manage": True}, headers=relative.headers
        )
        assert granted.status_code == 200, granted.text
    return link


async def test_a_child_pays_the_bill_of_a_parent_who_granted_manage(
    client, sandbox_http, settings, run_worker
):
    child = await insured_patient(client, sandbox_http, settings)
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    await linked(client, child, parent, manage=True)
    bill = await new_bill(client, await his_headers(client), parent, ITEMS)

    listed = (await client.get("/api/v1/bills", headers=child.headers)).json()
    started = await pay(client, child, bill["id"], cash_method="wechat", use_personal_account=False)
    notification = await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    await post_notification(client, "wechat", notification)
    await run_worker()

    assert [b["id"] for b in listed["items"]] == [bill["id"]]
    assert started.status_code == 200, started.text
    paid = await Bill.select(Bill.state, Bill.payer_user_id, Bill.insured_id).first()
    assert paid["state"] == "PAID"
    seen = (await client.get(f"/api/v1/bills/{bill['id']}", headers=parent.headers)).json()
    assert seen["state"] == "PAID"  # the parent sees it paid too
    told = await Notification.select(Notification.user_id).where(Notification.template == "payment_succeeded")
    assert len(told) == 2  # both: the parent whose bill it is, and the child who paid it
    assert paid["payer_user_id"] in {n["user_id"] for n in told}


async def test_without_manage_or_once_the_link_ends_a_relatives_bill_is_not_found(
    client, sandbox_http, settings
):
    child, parent = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    link = await linked(client, child, parent, manage=False)
    bill = await new_bill(client, await his_headers(client), parent, ITEMS)

    ungranted = await client.get(f"/api/v1/bills/{bill['id']}", headers=child.headers)
    await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"manage": True}, headers=parent.headers
    )
    granted = await client.get(f"/api/v1/bills/{bill['id']}", headers=child.headers)
    await client.post(f"/api/v1/family/links/{link['id']}/end", headers=parent.headers)
    ended = await pay(client, child, bill["id"], cash_method="wechat")
    listed = (await client.get("/api/v1/bills", headers=child.headers)).json()

    assert ungranted.status_code == 404 and ungranted.json()["error"]["code"] == "BILL_NOT_FOUND"
    assert granted.status_code == 200
    assert ended.status_code == 404 and ended.json()["error"]["code"] == "BILL_NOT_FOUND"
    assert listed["items"] == []
    assert (await Bill.select(Bill.state).first())["state"] == "CREATED"


async def test_a_relatives_credit_line_is_not_drawn_by_whoever_manages_their_bills(
    client, sandbox_http, settings
):
    child, parent = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    await linked(client, child, parent, manage=True)
    bill = await new_bill(client, await his_headers(client), parent, ITEMS)

    answer = await pay(client, child, bill["id"], cash_method="credit", use_personal_account=False)

    assert answer.status_code == 422 and answer.json()["error"]["code"] == "CASH_METHOD_UNAVAILABLE"
    assert (await Bill.select(Bill.state).first())["state"] == "CREATED"


async def test_a_holder_books_for_a_relative_in_their_care(client, sandbox_http, settings):
    child, parent, stranger = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    link = await linked(client, child, parent, manage=True)
    unmanaged = await linked(client, stranger, parent, manage=False)
    session_id = await one_session(client, child, capacity=5)

    for_parent = await book(client, child, session_id, relative_link_id=link["id"])
    not_theirs = await book(client, stranger, session_id, relative_link_id=link["id"])
    ungranted = await book(client, stranger, session_id, relative_link_id=unmanaged["id"])
    again = await book(client, parent, session_id)

    assert for_parent.status_code == 201, for_parent.text
    parents = (await client.get("/api/v1/appointments", headers=parent.headers)).json()["items"]
    childs = (await client.get("/api/v1/appointments", headers=child.headers)).json()["items"]
    assert [a["id"] for a in parents] == [a["id"] for a in childs] == [for_parent.json()["id"]]
    for refused in (not_theirs, ungranted):
        assert refused.status_code == 404 and refused.json()["error"]["detail"]["field"] == "relative_link_id"
    assert again.status_code == 409 and again.json()["error"]["code"] == "APPOINTMENT_DUPLICATE"
    strangers = (await client.get("/api/v1/appointments", headers=stranger.headers)).json()["items"]
    assert strangers == []


async def test_a_holder_who_books_and_pays_for_a_relative_hears_of_it_as_the_relative_does(
    client, sandbox_http, settings, run_worker
):
    child, parent = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    link = await linked(client, child, parent, manage=True)
    session_id = await one_session(client, child, capacity=5)
    hold = (await book(client, child, session_id, relative_link_id=link["id"])).json()

    confirmed = await pay_fee(client, sandbox_http, child, hold, run_worker)

    assert confirmed["state"] == "CONFIRMED"
    booked = await Notification.select(Notification.user_id).where(
        Notification.template == "appointment_booked"
    )
    assert len(booked) == 2  # the parent's account and the child's, once each
