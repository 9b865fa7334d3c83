"""A person's clicks through the H5 pages: log in, bind, show the code, get billed at the hospital's
terminal, pay by WeChat Pay at the sandbox cashier, see PAID and the message; book and pay a fee."""

from __future__ import annotations

import re

import segno
from playwright.async_api import Page, expect

from backend.billing.tables import Bill
from backend.booking.tables import Appointment
from miniprogram_stub.client import resident_id


async def go(page: Page, route: str) -> None:
    """Where the tab bar or a link would take the patient (from a page without either)."""
    await page.goto(page.url.split("#")[0] + route)


async def log_in_and_bind(page: Page, user: str, shot=None) -> None:
    await page.get_by_test_id("login-user").fill(user)
    if shot:
        await shot(page, "login")
    await page.get_by_test_id("login").click()
    await page.get_by_test_id("go-bind").click()
    await page.get_by_test_id("bind-id").fill(resident_id(user))
    await page.get_by_test_id("bind-agree").check()
    if shot:
        await shot(page, "bind")
    await page.get_by_test_id("bind-submit").click()
    await expect(page.get_by_test_id("qr-payload")).to_have_text(re.compile(r".{16,}"))


async def bill_at_the_terminal(terminal: Page, payload: str) -> None:
    """The terminal decodes the patient's code (masked name shown), the hospital bills the visit."""
    await terminal.get_by_test_id("terminal-payload").fill(payload)
    await terminal.get_by_test_id("terminal-decode").click()
    await expect(terminal.get_by_test_id("patient-name")).to_have_text("测**者")
    await terminal.get_by_test_id("terminal-create").click()
    await expect(terminal.locator('[data-testid="terminal-bill"] [data-state="CREATED"]')).to_be_visible()


async def pay_at_the_cashier(page: Page, shot=None) -> None:
    """From a bill's page: without the personal account, so a cash part is left for the channel
    (the patient's own: WeChat Pay, or Alipay)."""
    await page.get_by_test_id("use-account").uncheck()
    await expect(page.get_by_test_id("pay")).to_have_text(re.compile(r"¥[1-9]"))
    if shot:
        await shot(page, "bill")
    await page.get_by_test_id("pay").click()
    await page.locator(".subscribe-allow").click()  # the subscribe dialog: both templates allowed
    await expect(page.get_by_test_id("cashier-amount")).to_have_text(re.compile(r"¥[1-9]"))
    if shot:
        await shot(page, "cashier")
    await page.get_by_test_id("cashier-pay").click()
    paid = page.locator('[data-testid="cashier-result"] [data-state]')
    await expect(paid).to_have_attribute("data-state", re.compile(r"^(SUCCESS|TRADE_SUCCESS)$"))
    await page.get_by_test_id("cashier-done").click()
    await expect(page.get_by_test_id("paid")).to_be_visible()  # the worker has seen WeChat Pay's word


async def test_billed_at_the_terminal_paid_on_the_phone(new_page, shot):
    phone = await new_page("/web/")
    await log_in_and_bind(phone, "alice", shot)
    await expect(phone.get_by_test_id("qr-countdown")).to_contain_text("秒后自动刷新")
    await shot(phone, "qr")
    payload = await phone.get_by_test_id("qr-payload").inner_text()

    terminal = await new_page("/web/terminal.html", phone=False)
    await bill_at_the_terminal(terminal, payload)

    await go(phone, "#/bills")
    await phone.get_by_test_id("bill-row").click()
    await expect(phone.get_by_test_id("split-items")).to_contain_text("进口维生素")
    await pay_at_the_cashier(phone, shot)
    await shot(phone, "paid")

    await expect(terminal.locator('[data-testid="terminal-bill"] [data-state="PAID"]')).to_be_visible()
    await shot(terminal, "terminal")
    await go(phone, "#/messages")
    await expect(phone.get_by_test_id("message").first).to_contain_text("缴费成功")
    await shot(phone, "inbox")
    bill = await Bill.select(Bill.state, Bill.cash_method).first()
    assert (bill["state"], bill["cash_method"]) == ("PAID", "wechat")


async def test_a_booking_paid_and_shown(new_page, shot):
    terminal = await new_page("/web/terminal.html", phone=False)
    await terminal.get_by_test_id("publish-schedule").click()
    await expect(terminal.get_by_test_id("schedule-result")).to_contain_text("28")

    phone = await new_page("/web/")
    await log_in_and_bind(phone, "bob")
    await go(phone, "#/home")
    await phone.locator('[data-tab="book"]').click()
    await phone.get_by_test_id("hospital-row").filter(has_text="杭州市第一人民医院").click()
    await phone.get_by_test_id("department-row").filter(has_text="心血管内科").click()
    await expect(phone.get_by_test_id("doctor").first).to_be_visible()
    await shot(phone, "doctors")
    await phone.get_by_test_id("doctor").filter(has_text="王建国").get_by_test_id("session").first.click()
    await phone.locator(".book-confirm").click()
    await pay_at_the_cashier(phone)

    await go(phone, "#/appointments")
    await expect(phone.get_by_test_id("appointment").first).to_contain_text("预约成功")
    await expect(phone.get_by_test_id("queue-no")).to_contain_text("就诊序号")
    await shot(phone, "appointments")
    appointment = await Appointment.select(Appointment.state).first()
    assert appointment["state"] == "CONFIRMED"


async def test_alipay_in_english(new_page, shot):
    phone = await new_page("/web/")
    await phone.get_by_test_id("lang").click()
    await expect(phone.get_by_test_id("title")).to_have_text("Log in")
    await phone.get_by_test_id("channel-alipay").click()
    await log_in_and_bind(phone, "carol")
    payload = await phone.get_by_test_id("qr-payload").inner_text()
    await bill_at_the_terminal(await new_page("/web/terminal.html", phone=False), payload)

    await go(phone, "#/bills")
    await phone.get_by_test_id("bill-row").click()
    await pay_at_the_cashier(phone)
    await shot(phone, "alipay-paid-en")
    bill = await Bill.select(Bill.state, Bill.cash_method).first()
    assert (bill["state"], bill["cash_method"]) == ("PAID", "alipay")


async def test_the_terminal_reads_the_code_from_a_photo_of_the_phone(new_page, tmp_path):
    phone = await new_page("/web/")
    await log_in_and_bind(phone, "photo-patient")
    # What a scanner sees: the phone's screen, photographed (here, the code's picture, as PNG).
    await phone.get_by_test_id("qr-payload").wait_for()
    picture = tmp_path / "code.png"
    segno.make(await phone.get_by_test_id("qr-payload").inner_text(), error="m").save(
        str(picture), scale=6, border=4
    )
    terminal = await new_page("/web/terminal.html", phone=False)

    await terminal.get_by_test_id("terminal-image").set_input_files(str(picture))

    await expect(terminal.get_by_test_id("patient-name")).to_have_text("测**者")
