"""The golden path against a running system (`./run dev`), each step printed with its figures:
`python -m miniprogram_stub.demo [--api URL] [--sandbox URL]`, or `./run medpay demo`.

A WeChat user logs in and binds an e-certificate (a sandbox `测试` person, employee-insured); the
demo hospital's terminal decodes their QR code and its system bills the visit; the bill is
pre-settled (fund, personal account, cash) and its cash paid by WeChat Pay, which notifies medpay;
the payment lands in the inbox. A relative accepts the patient's invitation and grants `manage`,
and the patient pays the relative's bill. Then a credit line: applied for with consent, approved by
the sandbox bank, a bill paid by it and the drawdown repaid at the bank's cashier.

Every run makes new people, so it can be run again on the same data. It speaks HTTP only, through
the typed client (`miniprogram_stub.api`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import httpx
import msgspec

from miniprogram_stub.api import ApiError, Medpay
from miniprogram_stub.api import models as m
from miniprogram_stub.client import DEMO_HIS, DEMO_ITEMS, DEMO_TERMINAL, default_urls, resident_id
from miniprogram_stub.sandbox import config

T = TypeVar("T")
# The demo visit and a self-paid import drug: more than a demo person's personal account holds
# (¥1,037.37, the sandbox's rule for the birth date `resident_id` gives), so there is cash to pay.
ITEMS = msgspec.convert(
    [
        *DEMO_ITEMS,
        {"code": "MED950", "name": "进口降脂药", "category": "C", "quantity": 2, "unit_price_fen": 30000},
    ],
    list[m.ItemIn],
)
CashMethod = Literal["wechat", "credit"]


def yuan(fen: int | None) -> str:
    return "-" if fen is None else f"¥{fen / 100:,.2f}"


def step(title: str, text: str) -> None:
    print(f"{title:<16}{text}")  # noqa: T201


async def until(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, within_s: float = 20
) -> T:
    """`fetch` again until `done` (the worker and the bank take a moment); a clear error if never."""
    deadline = time.monotonic() + within_s
    while not done(shown := await fetch()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within_s:.0f} s (is the worker running?)")
        await asyncio.sleep(0.2)
    return shown


class Phone:
    """What only the phone and the payer do: the platform's login code, entering the password."""

    def __init__(self, sandbox: httpx.AsyncClient) -> None:
        self.sandbox = sandbox

    async def wechat_code(self, user: str) -> str:
        body = {"appid": config.WECHAT_APPID, "user": user}
        answer = await self.sandbox.post("/wechat/_sandbox/login", json=body)
        return str(answer.raise_for_status().json()["code"])

    async def pay_wechat(self, out_trade_no: str) -> None:
        """The payer pays the order; WeChat Pay notifies medpay."""
        confirm = {"out_trade_no": out_trade_no, "outcome": "success", "deliver": True}
        (await self.sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).raise_for_status()

    async def pay_bank_cashier(self, cashier_url: str) -> None:
        (await self.sandbox.post(f"{cashier_url}/confirm", json={"outcome": "success"})).raise_for_status()


class Demo:
    def __init__(self, api: Medpay, phone: Phone) -> None:
        self.api, self.phone = api, phone
        self.run = uuid.uuid4().hex[:6]

    async def patient(self, name: str) -> Medpay:
        """Log in by WeChat and bind the e-certificate of a `测试` person: the patient's caller."""
        user = f"demo-{name}-{self.run}"
        tokens = await self.api.auth.login(
            m.LoginRequest(channel="wechat", code=await self.phone.wechat_code(user))
        )
        patient = self.api.as_token(tokens.access_token)
        me = await patient.auth.me()
        step("login", f"WeChat user {user}: patient {me.id}, access token for {tokens.expires_in} s")
        bind = m.BindRequest(
            name=f"测试{name}", id_type="resident_id", id_number=resident_id(user, employee=True)
        )
        ecert = await patient.ecert.bind(bind)
        who = ecert.identity
        step(
            "e-certificate",
            f"{who.name} {who.id_number}, {who.insurance_type} insurance in {who.region_code}",
        )
        return patient

    async def bill(self, qr: m.QrCodeRead, title: str = "visit") -> m.BillRead:
        """The demo terminal decodes the code into a visit; the demo HIS bills it."""
        terminal = await self.api.as_partner(*DEMO_TERMINAL)
        visit = await terminal.ecert.decode(qr.payload)
        step(title, f"{DEMO_TERMINAL[0]} opened a visit at {visit.institution} for {visit.patient.name}")
        his = await self.api.as_partner(*DEMO_HIS)
        bill = await his.bills.create(
            m.BillCreate(order_type="DIAG", items=ITEMS, visit_token=visit.visit_token)
        )
        step("bill", f"{DEMO_HIS[0]} billed {bill.bill_no}: {len(bill.items)} items, {yuan(bill.total_fen)}")
        return bill

    async def pay(self, payer: Medpay, bill: m.BillRead, method: CashMethod = "wechat") -> m.BillRead:
        split = await payer.bills.presettle(bill.id)
        step(
            "presettle",
            f"fund {yuan(split.fund_fen)} / personal account {yuan(split.personal_account_fen)}"
            f" (balance {yuan(split.personal_account_balance_fen)}) / cash {yuan(split.cash_fen)}",
        )
        paid = await payer.bills.pay(bill.id, m.PayRequest(cash_method=method))
        if paid.state == "PAYING" and method == "wechat" and paid.out_trade_no:
            step("pay", f"WeChat Pay order {paid.out_trade_no} for {yuan(paid.cash_fen)}: the payer pays")
            await self.phone.pay_wechat(paid.out_trade_no)
        elif paid.state == "PAYING":
            step("pay", f"{yuan(paid.cash_fen)} by {paid.cash_method}: the bank disburses")
        done = await until(
            lambda: payer.bills.get(bill.id), lambda b: b.state != "PAYING", f"bill {bill.bill_no}"
        )
        step(
            "paid",
            f"bill {done.bill_no}: {done.state}, cash {yuan(done.cash_fen)} by {done.cash_method or '-'}",
        )
        if done.state != "PAID":
            raise RuntimeError(f"bill {done.bill_no} ended {done.state}")
        return done

    async def golden_path(self) -> None:
        alice = await self.patient("王芳")
        await self.pays_own_bill(alice)
        print()  # noqa: T201
        await self.pays_for_relative(alice)
        print()  # noqa: T201
        await self.borrows_and_repays(alice)

    async def pays_own_bill(self, patient: Medpay) -> None:
        qr = await patient.ecert.qrcode()
        step("QR code", f"{qr.payload[:24]}..., valid until {qr.expires_at:%H:%M:%S}")
        await self.pay(patient, await self.bill(qr))
        inbox = await until(patient.notifications.inbox, lambda i: bool(i.items), "the payment's message")
        note = inbox.items[0]
        step("inbox", f"{note.title} ({note.template}, {note.delivery}): {note.body}; {inbox.unread} unread")

    async def pays_for_relative(self, holder: Medpay) -> None:
        """Her mother accepts her invitation and lets her manage; she pays her mother's bill."""
        mother = await self.patient("李秀英")
        invitation = await holder.family.invite(m.InvitationCreate(relation="PARENT"))
        link = await mother.family.accept(m.InvitationAccept(code=invitation.code, relation="CHILD"))
        link = await mother.family.set_grants(link.id, m.GrantsUpdate(manage=True))
        step(
            "family", f"her mother accepted the invitation (link {link.id}, {link.relation}), granted manage"
        )
        qr = await holder.family.relative_qrcode(link.id)  # the mother's code, on the daughter's phone
        await self.pay(holder, await self.bill(qr, "mother's visit"))

    async def borrows_and_repays(self, patient: Medpay) -> None:
        product = (await patient.credit.products())[0]
        consent = m.CreditConsent(terms_version=product.terms_version, accepted=True)
        line = await patient.credit.apply(m.ApplicationCreate(product_id=product.id, consent=consent))
        step(
            "credit",
            f"applied to {product.bank} for {product.name} (terms {product.terms_version}): {line.status}",
        )
        credit = await until(
            patient.credit.get, lambda c: c.lines[0].status != "APPLIED", "the bank's decision"
        )
        line = credit.lines[0]
        step(
            "credit line",
            f"{line.status}: limit {yuan(line.limit_fen)}, {yuan(line.available_fen)} available",
        )
        if line.status != "ACTIVE":
            raise RuntimeError(f"the credit line is {line.status}: {line.decline_reason}")
        await self.pay(patient, await self.bill(await patient.ecert.qrcode()), "credit")
        drawdown = (await patient.credit.get()).lines[0].drawdowns[0]
        owed = f"owed {yuan(drawdown.owed_fen)} by {drawdown.due_date}"
        step("drawdown", f"{drawdown.status} {yuan(drawdown.amount_fen)}, {owed}")
        repayment = await patient.credit.repay(
            m.RepaymentCreate(amount_fen=drawdown.owed_fen, drawdown_id=drawdown.id)
        )
        if repayment.cashier_url is None:
            raise RuntimeError(f"repayment {repayment.id} has no cashier: {repayment.status}")
        await self.phone.pay_bank_cashier(repayment.cashier_url)
        credit = await until(
            patient.credit.get, lambda c: c.lines[0].drawdowns[0].status == "REPAID", "the bank's repayment"
        )
        available = yuan(credit.lines[0].available_fen)
        step("repaid", f"{yuan(repayment.amount_fen)} at the bank's cashier: {available} available again")


async def run(api_url: str, sandbox_url: str) -> None:
    async with Medpay.connect(api_url) as api, httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        await Demo(api, Phone(sandbox)).golden_path()


def main(argv: list[str] | None = None) -> int:
    api, sandbox = default_urls()
    parser = argparse.ArgumentParser(prog="medpay demo", description="The golden path, step by step.")
    parser.add_argument("--api", default=api, help=f"medpay (default {api})")
    parser.add_argument("--sandbox", default=sandbox, help=f"the sandbox partners (default {sandbox})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        asyncio.run(run(args.api.rstrip("/"), args.sandbox.rstrip("/")))
    except ApiError as exc:
        print(f"error: medpay refused: {exc} {exc.detail or ''}", file=sys.stderr)  # noqa: T201
        return 1
    except (httpx.HTTPError, TimeoutError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"\ndone in {time.monotonic() - started:.1f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
