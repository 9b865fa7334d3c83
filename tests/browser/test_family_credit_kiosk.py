"""Family, credit and kiosk pages clicked through: a child pays a parent's bill with the family
account, linked and granted on both phones; a line applied for with consent, a bill paid by credit
and repaid at the bank's cashier; an elder at the kiosk shows their face, sees their bills,
registers for a session under way and pays the fee by face, the cash part at the counter."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Page, expect

from backend.billing.tables import Bill
from backend.booking.tables import Appointment, ClinicSession
from backend.credit.tables import Bank, Drawdown
from backend.kiosk.tables import FacePayment
from miniprogram_stub.client import resident_id
from tests import servers
from tests.booking.arrange import running_now
from tests.browser.conftest import ARTIFACTS, DOC_SHOTS, Shot, small
from tests.browser.test_pages import bill_at_the_terminal, go

# This module's screenshots shown in docs/pages.md (and the README), beside conftest's.
DOC_NAMES = {"family", "family-bill", "credit", "kiosk-pay", "kiosk-counter"}


@pytest.fixture
def shot(shot: Shot, request: pytest.FixtureRequest) -> Shot:
    """conftest's, and with MEDPAY_DOC_SCREENSHOTS=1 this module's docs' ones too."""

    async def take(page: Page, name: str) -> None:
        await shot(page, name)
        if os.environ.get("MEDPAY_DOC_SCREENSHOTS") and name in DOC_NAMES:
            small(ARTIFACTS / f"{request.node.name}-{name}.png", DOC_SHOTS / f"{name}.png")

    return take


@pytest.fixture(scope="module")
def bank_url() -> Iterator[str]:
    with servers.bank() as url:
        yield url


@pytest.fixture
async def bank(demo_hospital: None, bank_url: str, web_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox bank with empty books, calling back our web process; the demo bank pointed at it."""
    async with httpx.AsyncClient(base_url=bank_url, timeout=30) as http:
        await http.delete("/_bank")
        await http.put("/_bank/config", json={"callback_url": f"{web_url}/api/v1/callbacks/banks/demo-bank"})
        await Bank.update({Bank.api_base: bank_url}).where(Bank.code == "demo-bank")
        yield http
        await http.post("/_bank/deliveries/wait", json={"timeout_s": 20})


async def logged_in_and_bound(page: Page, user: str, *, employee: bool = False) -> None:
    """A phone with its e-certificate bound: employee insurance has a personal account."""
    await page.get_by_test_id("login-user").fill(user)
    await page.get_by_test_id("login").click()
    await page.get_by_test_id("go-bind").click()
    await page.get_by_test_id("bind-id").fill(resident_id(user, employee=employee))
    await page.get_by_test_id("bind-agree").check()
    await page.get_by_test_id("bind-submit").click()
    await expect(page.get_by_test_id("qr-payload")).to_have_text(re.compile(r".{16,}"))


async def save_grants(page: Page, side: str, grant: str) -> None:
    link = page.locator(f'[data-testid="family-link"][data-side="{side}"]')
    await link.locator(f'[data-grant="{grant}"]').check()
    await link.get_by_test_id("grants-save").click()
    saved = page.get_by_role("status").filter(has_text="已保存")
    await expect(saved).to_be_visible()
    await expect(saved).to_be_hidden()  # out of the screenshots' way


async def test_a_child_pays_a_parents_bill_with_the_family_account(new_page, shot):
    child = await new_page("/web/")
    await logged_in_and_bound(child, "dan", employee=True)
    await go(child, "#/family/add")
    await child.get_by_test_id("invite-relation").select_option("PARENT")
    await child.get_by_test_id("invite").click()
    await expect(child.get_by_test_id("invitation-qr")).to_be_visible()
    await shot(child, "family-invite")
    code = await child.get_by_test_id("invitation-code").inner_text()

    # The parent, on their own phone: accepts, and lets the child manage their bills.
    parent = await new_page("/web/")
    await logged_in_and_bound(parent, "erin")
    await go(parent, "#/family/add")
    await parent.get_by_test_id("family-tab-accept").click()
    await parent.get_by_test_id("accept-code").fill(code)
    await parent.get_by_test_id("accept-relation").select_option("CHILD")
    await parent.get_by_test_id("accept").click()
    await expect(parent.locator('[data-testid="family-link"][data-side="relative"]')).to_contain_text("子女")
    await save_grants(parent, "relative", "manage")

    # The child, the holder, opens their personal account to the parent's bills.
    await go(child, "#/family")
    await save_grants(child, "holder", "pay")
    await expect(child.get_by_test_id("relative-qr")).to_be_visible()
    await shot(child, "family")

    await go(parent, "#/ecert/qr")
    await expect(parent.get_by_test_id("qr-payload")).to_have_text(re.compile(r".{16,}"))
    payload = await parent.get_by_test_id("qr-payload").inner_text()
    await bill_at_the_terminal(await new_page("/web/terminal.html", phone=False), payload)

    await go(child, "#/bills")
    await child.get_by_test_id("bill-row").click()
    await expect(child.get_by_test_id("family-account")).to_be_checked()
    await expect(child.locator('[data-part="family_account"]')).to_have_text(re.compile(r"¥[1-9]"))
    await expect(child.get_by_test_id("family-balance")).to_contain_text("我的个人账户余额")
    await shot(child, "family-bill")
    await child.get_by_test_id("pay").click()
    await child.locator(".subscribe-allow").click()
    await child.get_by_test_id("cashier-pay").click()
    await child.get_by_test_id("cashier-done").click()
    await expect(child.get_by_test_id("paid")).to_be_visible()

    bill = await Bill.select(Bill.state, Bill.cash_method, Bill.family_account_fen).first()
    assert (bill["state"], bill["cash_method"]) == ("PAID", "wechat")
    assert bill["family_account_fen"] > 0


async def test_a_credit_line_applied_for_drawn_on_and_repaid(new_page, shot, bank, sandbox_http):
    phone = await new_page("/web/")
    await logged_in_and_bound(phone, "gus")
    await go(phone, "#/credit")
    await expect(phone.get_by_test_id("credit-terms")).not_to_be_empty()
    await phone.get_by_test_id("credit-consent").check()
    await shot(phone, "credit-apply")
    await phone.get_by_test_id("credit-apply").click()
    await expect(phone.get_by_test_id("credit-line")).to_have_attribute("data-status", "ACTIVE")

    payload = await go_and_read_the_code(phone)
    await bill_at_the_terminal(await new_page("/web/terminal.html", phone=False), payload)
    await go(phone, "#/bills")
    await phone.get_by_test_id("bill-row").click()
    await phone.get_by_test_id("cash-method").select_option("credit")
    await phone.get_by_test_id("pay").click()
    await phone.locator(".subscribe-allow").click()
    await expect(phone.get_by_test_id("paid")).to_be_visible()  # the bank disbursed, by callback

    await go(phone, "#/credit")
    drawdown = phone.get_by_test_id("drawdown")
    await expect(drawdown).to_have_attribute("data-status", "DISBURSED")
    await expect(drawdown).to_contain_text("到期日")
    await shot(phone, "credit")
    # The page opens the bank's own cashier, where the patient pays the bank.
    await drawdown.get_by_test_id("repay").click()
    await phone.locator(".repay-confirm").click()
    await phone.wait_for_url(f"{str(bank.base_url).rstrip('/')}/_bank/cashier/**")
    await phone.get_by_role("button", name="支付").click()
    await expect(phone.locator("#out")).to_contain_text("POSTED")
    for _ in range(40):  # the bank's callback, applied by the worker
        if await Drawdown.exists().where(Drawdown.status == "REPAID"):
            break
        await asyncio.sleep(0.25)
    await phone.goto(f"{sandbox_http.base_url}/web/index.html#/credit")  # back from the bank
    await expect(phone.get_by_test_id("drawdown")).to_have_attribute("data-status", "REPAID")


async def go_and_read_the_code(phone: Page) -> str:
    await go(phone, "#/ecert/qr")
    await expect(phone.get_by_test_id("qr-payload")).to_have_text(re.compile(r".{16,}"))
    return await phone.get_by_test_id("qr-payload").inner_text()


async def test_an_elder_at_the_kiosk_registers_and_pays_by_face_at_the_counter(new_page, shot):
    terminal = await new_page("/web/terminal.html", phone=False)
    await terminal.get_by_test_id("publish-schedule").click()
    await expect(terminal.get_by_test_id("schedule-result")).to_contain_text("28")
    first = await ClinicSession.select(ClinicSession.id).order_by(ClinicSession.starts_at).first()
    await running_now(first["id"])  # a session under way today: walk-ins only

    phone = await new_page("/web/")
    await logged_in_and_bound(phone, "fay")
    payload = await phone.get_by_test_id("qr-payload").inner_text()
    await bill_at_the_terminal(terminal, payload)

    kiosk = await new_page("/web/kiosk.html", phone=False)
    await kiosk.get_by_test_id("kiosk-id").fill(resident_id("fay"))
    await shot(kiosk, "kiosk-face")
    await kiosk.get_by_test_id("kiosk-scan").click()
    await expect(kiosk.get_by_test_id("kiosk-patient")).to_contain_text("测**者")
    await kiosk.get_by_test_id("kiosk-bills").click()
    await expect(kiosk.get_by_test_id("kiosk-bill")).to_have_count(1)  # the terminal's bill

    await go_to_menu(kiosk)
    await kiosk.get_by_test_id("kiosk-register").click()
    await expect(kiosk.get_by_test_id("kiosk-session")).to_have_count(1)
    await shot(kiosk, "kiosk-sessions")
    await kiosk.get_by_test_id("kiosk-session-pick").click()
    await expect(kiosk.get_by_test_id("kiosk-amount")).to_have_text(re.compile(r"¥[1-9]"))
    await expect(kiosk.get_by_test_id("kiosk-consent")).to_contain_text("窗口缴现金")
    await shot(kiosk, "kiosk-pay")
    await kiosk.get_by_test_id("kiosk-pay").click()
    await expect(kiosk.get_by_test_id("kiosk-counter")).to_contain_text("收费窗口")
    await shot(kiosk, "kiosk-counter")

    appointment = await Appointment.select(Appointment.state, Appointment.bill_id).first()
    assert appointment["state"] == "HELD"  # confirmed once the counter takes the cash
    bill = await Bill.select(Bill.state, Bill.cash_method).where(Bill.id == appointment["bill_id"]).first()
    assert (bill["state"], bill["cash_method"]) == ("PAYING", "counter")
    assert await FacePayment.count() == 1


async def go_to_menu(kiosk: Page) -> None:
    await kiosk.get_by_role("button", name="返回").click()
    await expect(kiosk.get_by_test_id("kiosk-register")).to_be_visible()
