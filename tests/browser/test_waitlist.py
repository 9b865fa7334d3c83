"""The waitlist and a relative's money at the kiosk, clicked through: a full session's waitlist
joined on the phone, the place freed by a cancel offered as a hold and paid at the cashier, or the
line left; a parent at the kiosk has their child's personal account pay, refused until the child
allows kiosks."""

from __future__ import annotations

import os
import re

import pytest
from playwright.async_api import Page, expect

from backend.billing.tables import Bill
from backend.booking.tables import Appointment, WaitlistEntry
from backend.kiosk.tables import FacePayment
from tests.billing.factories import ITEMS, his_headers, insured_patient, new_bill
from tests.booking.arrange import cancel, held, one_session
from tests.browser.conftest import ARTIFACTS, DOC_SHOTS, Shot, small
from tests.browser.test_family_credit_kiosk import logged_in_and_bound
from tests.browser.test_pages import go, pay_at_the_cashier
from tests.family.test_acting_for import linked
from tests.family.test_mutual_aid import grant

# This module's screenshots shown in docs/pages.md, beside conftest's.
DOC_NAMES = {"waitlist", "kiosk-relative"}
# Class A only: the resident parent's part, which the child's personal account pays in full.
IN_SCOPE = [item for item in ITEMS if item["category"] == "A"]


@pytest.fixture
def shot(shot: Shot, request: pytest.FixtureRequest) -> Shot:
    async def take(page: Page, name: str) -> None:
        await shot(page, name)
        if os.environ.get("MEDPAY_DOC_SCREENSHOTS") and name in DOC_NAMES:
            small(ARTIFACTS / f"{request.node.name}-{name}.png", DOC_SHOTS / f"{name}.png")

    return take


async def test_a_place_freed_is_offered_from_the_waitlist_and_paid(
    new_page, shot, client, sandbox_http, settings
):
    first = await insured_patient(client, sandbox_http, settings)
    session_id = await one_session(client, first, capacity=1)
    hold = await held(client, first, session_id)  # the only place

    phone = await new_page("/web/")
    await join_the_waitlist_on_the_phone(phone, "hana")
    entry = phone.get_by_test_id("waitlist-entry")
    await expect(entry).to_have_attribute("data-state", "WAITING")
    await expect(entry.get_by_test_id("waitlist-note")).to_contain_text("候补第 1 位")
    await expect(entry).to_contain_text("王建国")

    cancelled = await cancel(client, first, hold["id"])
    assert cancelled.status_code == 200, cancelled.text

    await phone.reload()
    offered = phone.get_by_test_id("appointment").filter(has=phone.get_by_test_id("offered"))
    await expect(offered).to_contain_text("待支付")
    await expect(offered.get_by_test_id("offered")).to_contain_text("候补成功")
    await expect(entry).to_have_attribute("data-state", "OFFERED")
    await shot(phone, "waitlist")
    await offered.get_by_test_id("pay-fee").click()
    await pay_at_the_cashier(phone)

    await go(phone, "#/appointments")
    await expect(
        phone.get_by_test_id("appointment").filter(has=phone.get_by_test_id("queue-no"))
    ).to_contain_text("预约成功")
    await expect(entry).to_have_attribute("data-state", "BOOKED")
    mine = await Appointment.select(Appointment.state).where(Appointment.waitlist_id.is_not_null()).first()
    assert mine["state"] == "CONFIRMED"
    assert (await WaitlistEntry.select(WaitlistEntry.state).first())["state"] == "BOOKED"


async def join_the_waitlist_on_the_phone(phone: Page, user: str) -> None:
    """Tomorrow's session of 王建国 is full: the phone offers its waitlist instead of a place."""
    await logged_in_and_bound(phone, user)
    await go(phone, "#/book")
    await phone.get_by_test_id("hospital-row").filter(has_text="杭州市第一人民医院").click()
    await phone.get_by_test_id("department-row").filter(has_text="心血管内科").click()
    await phone.get_by_test_id("doctor").filter(has_text="王建国").get_by_test_id("session-waitlist").click()
    await phone.locator(".waitlist-confirm").click()
    await expect(phone.get_by_test_id("waitlist-entry")).to_have_attribute("data-state", "WAITING")


async def test_leaving_the_waitlist(new_page, client, sandbox_http, settings):
    first = await insured_patient(client, sandbox_http, settings)
    await held(client, first, await one_session(client, first, capacity=1))
    phone = await new_page("/web/")
    await join_the_waitlist_on_the_phone(phone, "iris")

    await phone.get_by_test_id("waitlist-leave").click()
    await phone.locator(".leave-confirm").click()

    await expect(phone.get_by_test_id("waitlist-entry")).to_have_attribute("data-state", "LEFT")
    await expect(phone.get_by_test_id("waitlist-leave")).to_have_count(0)
    assert (await WaitlistEntry.select(WaitlistEntry.state).first())["state"] == "LEFT"


async def test_a_relatives_account_pays_at_the_kiosk_once_they_allow_it(
    new_page, shot, client, sandbox_http, settings
):
    child = await insured_patient(client, sandbox_http, settings)
    parent = await insured_patient(client, sandbox_http, settings, insurance="resident")
    link = await linked(client, child, parent, manage=True)
    await grant(client, link, child, pay=True)
    bill = await new_bill(client, await his_headers(client), parent, IN_SCOPE)

    kiosk = await new_page("/web/kiosk.html", phone=False)
    await kiosk.get_by_test_id("kiosk-id").fill(parent.id_number)
    await kiosk.get_by_test_id("kiosk-scan").click()
    await kiosk.get_by_test_id("kiosk-bills").click()
    await kiosk.get_by_test_id("kiosk-bill-pay").click()
    await expect(kiosk.get_by_test_id("kiosk-consent")).to_have_attribute("data-by", "patient/counter")
    await kiosk.get_by_test_id("kiosk-payer-relative").click()
    await expect(kiosk.get_by_test_id("kiosk-refused")).to_contain_text("没有开通自助机代付")
    await expect(kiosk.get_by_test_id("kiosk-pay")).to_be_disabled()

    await grant(client, link, child, pay=True, kiosk=True)  # on the child's phone
    await kiosk.get_by_test_id("kiosk-payer-relative").click()
    consent = kiosk.get_by_test_id("kiosk-consent")
    await expect(consent).to_have_attribute("data-by", f"relative:{link['id']}/counter")
    await expect(consent).to_contain_text("亲属代付")
    await expect(kiosk.locator('[data-part="family_account"]')).to_have_text(re.compile(r"¥[1-9]"))
    await shot(kiosk, "kiosk-relative")
    await kiosk.get_by_test_id("kiosk-pay").click()
    await expect(kiosk.locator('[data-testid="kiosk-result"] [data-state="PAID"]')).to_be_visible()
    await expect(kiosk.get_by_test_id("kiosk-paid-by")).to_contain_text("亲属代付")

    paid = await Bill.select(Bill.state, Bill.family_account_fen).where(Bill.id == bill["id"]).first()
    assert paid["state"] == "PAID" and paid["family_account_fen"] > 0
    record = await FacePayment.select(FacePayment.family_link_id).first()
    assert record["family_link_id"] == link["id"]
