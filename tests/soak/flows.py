"""The load `./run soak` keeps on every flow while the chaos driver breaks things: what phones, the
hospital's system, its terminal and the payer do, each loop as a client would, retrying through
outages with the same `Idempotency-Key`, and remembering what was accepted so that its effect can
be checked at the end.

- `account`: the hospital bills an employee, who pays from the personal account; one bill in
  five is then refunded by the hospital.
- `wechat`: a resident pays the cash part by WeChat Pay, the payer confirms at the channel, whose
  signed notification medpay applies; one paid bill in four is refunded through the channel.
- `credit`: a patient with a credit line pays by it; the bank disburses and calls back.
- `booking`: an employee books a place on one of a few small sessions, pays its fee from the
  personal account; one confirmed appointment in three is cancelled (the fee refunded).
- `qr`: a patient shows the e-certificate QR code, the terminal decodes it.

A request is accepted when the answer says so (200 PAID, PAYING with the channel's order
confirmed, 201 HELD then PAID, a refund 200); a 4xx is a refusal, counted by its code; transport
errors and 5xx are retried with backoff for up to `GIVE_UP_S`, then the request is given up.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from miniprogram_stub.api import ApiError, Medpay
from miniprogram_stub.api import models as m
from tests.bench import arrange
from tests.bench.arrange import Patient, World

T = TypeVar("T")
GIVE_UP_S = 150.0  # longer than any outage the driver makes, and than a crashed request's key lease
RETRIED_CODES = {"IDEMPOTENCY_KEY_IN_USE"}  # 409: the first try still holds the key
# The messages each flow may send (a subscribe dialog shows at most three templates).
PAYING = ["wxtpl-pay-success", "wxtpl-refund"]
BOOKING = ["wxtpl-appt-booked", "wxtpl-appt-cancel", "wxtpl-pay-success"]


class GaveUp(Exception):
    pass


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Flow:
    """One flow's counts, and what it was promised."""

    name: str
    attempts: int = 0
    accepted: int = 0
    retries: int = 0
    gave_up: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)  # what the retries met, by kind
    paid_bills: set[str] = field(default_factory=set)  # accepted: must end PAID (or refunded)
    refunds: set[str] = field(default_factory=set)  # accepted refunds: must end SUCCEEDED
    appointments: dict[str, str] = field(default_factory=dict)  # accepted: the state each must end in
    latencies: list[float] = field(default_factory=list)

    async def persist(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` until it answers: retried on transport errors, 5xx and a key still in use."""
        deadline, delay = time.monotonic() + GIVE_UP_S, 0.2
        while True:
            try:
                return await call()
            except ApiError as exc:
                if exc.status < 500 and exc.code not in RETRIED_CODES:
                    raise Refused(exc.code) from exc
                self.retried[f"{exc.status} {exc.code}"] += 1
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:
                    raise Refused(f"{exc.response.status_code} from {exc.request.url.path}") from exc
                self.retried[f"{exc.response.status_code} from {exc.request.url.path}"] += 1
            except httpx.TransportError as exc:
                self.retried[type(exc).__name__] += 1
            self.retries += 1
            if time.monotonic() > deadline:
                raise GaveUp
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 4.0)

    async def attempt(self, work: Callable[[], Awaitable[None]]) -> None:
        self.attempts += 1
        began = time.perf_counter()
        try:
            await work()
        except Refused as exc:
            self.refused[exc.code] += 1
            return
        except GaveUp:
            self.gave_up += 1
            return
        self.accepted += 1
        self.latencies.append(time.perf_counter() - began)


@dataclass
class Load:
    """The flows over the seeded world, `clients` loops each, until `stop`."""

    w: World
    sandbox: httpx.AsyncClient
    sessions: list[int]
    clients: int
    pause_s: float = 0.2
    flows: dict[str, Flow] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def flow(self, name: str) -> Flow:
        return self.flows.setdefault(name, Flow(name))

    async def run(self, stop: asyncio.Event) -> None:
        loops = {
            "account": self.account,
            "wechat": self.wechat,
            "credit": self.credit,
            "booking": self.booking,
            "qr": self.qr,
        }

        async def loop(name: str, one: Callable[[Flow, int], Awaitable[None]], n: int) -> None:
            flow = self.flow(name)
            while not stop.is_set():
                await flow.attempt(lambda: one(flow, n))
                await asyncio.sleep(self.pause_s * self.rng.uniform(0.5, 1.5))

        await asyncio.gather(
            *(loop(name, one, n) for name, one in loops.items() for n in range(self.clients))
        )

    def patient(self, kind: str, n: int) -> Patient:
        """A patient of `kind` with room left (each loop keeps to its share, round the list)."""
        mine = self.w.patients[kind][n :: self.clients] or self.w.patients[kind]
        open_ = [p for p in mine if p.bills < arrange.BUDGET[kind]]
        if not open_:
            raise Refused("SOAK_OUT_OF_PATIENTS")
        chosen = self.rng.choice(open_)
        chosen.bills += 1
        return chosen

    async def bill(self, flow: Flow, patient: Patient) -> str:
        body = m.BillCreate(
            order_type="DIAG", cert_no=patient.cert_no, items=arrange.BILL_ITEMS[patient.kind]
        )
        key = uuid.uuid4().hex
        made = await flow.persist(lambda: self.w.his.bills.create(body, key=key))
        return str(made.id)

    async def subscribe(self, patient: Patient, templates: list[str]) -> None:
        """The subscribe dialog accepted before paying, as the mini-program asks: one message each."""
        shown = await self.sandbox.post(
            "/wechat/_sandbox/subscribe",
            json={
                "appid": self.w.settings.wechat.appid,
                "user": patient.user,
                "decisions": dict.fromkeys(templates, "accept"),
            },
        )
        shown.raise_for_status()
        results = {k: v for k, v in shown.json().items() if k != "errMsg"}
        phone = self.w.api.as_token(patient.token)
        await phone.notifications.record_subscriptions(m.SubscriptionResults(results=results))

    # -- the flows ---------------------------------------------------------------------------------

    async def account(self, flow: Flow, n: int) -> None:
        patient = self.patient("employee", n)
        bill_id = await self.bill(flow, patient)
        phone = self.w.api.as_token(patient.token)
        await flow.persist(lambda: self.subscribe(patient, PAYING))
        key = uuid.uuid4().hex
        paid = await flow.persist(lambda: phone.bills.pay(bill_id, m.PayRequest(), key=key))
        if paid.state != "PAID":
            raise Refused(f"ANSWERED_{paid.state}")
        flow.paid_bills.add(bill_id)
        if self.rng.random() < 0.2:
            await self.refund(flow, bill_id)

    async def refund(self, flow: Flow, bill_id: str) -> None:
        key = uuid.uuid4().hex
        body = m.RefundCreate(reason="soak: the patient left before the test")
        made = await flow.persist(lambda: self.w.his.bills.refund(bill_id, body, key=key))
        flow.refunds.add(str(made.id))

    async def wechat(self, flow: Flow, n: int) -> None:
        patient = self.patient("resident", n)
        bill_id = await self.bill(flow, patient)
        phone = self.w.api.as_token(patient.token)
        key = uuid.uuid4().hex
        payment = await flow.persist(
            lambda: phone.bills.pay(
                bill_id, m.PayRequest(use_personal_account=False, cash_method="wechat"), key=key
            )
        )
        if payment.state == "PAID":  # the fund paid it all
            flow.paid_bills.add(bill_id)
            return
        confirm = {"out_trade_no": payment.out_trade_no, "deliver": True}

        async def confirmed() -> None:
            (await self.sandbox.post("/_sandbox/pay/wechat/confirm", json=confirm)).raise_for_status()

        await flow.persist(confirmed)  # the payer paid: from here the money is the channel's
        flow.paid_bills.add(bill_id)
        if self.rng.random() < 0.25 and await self.paid_within(phone, bill_id, 20.0):
            await self.refund(flow, bill_id)

    async def paid_within(self, phone: Medpay, bill_id: str, seconds: float) -> bool:
        """The phone polls its bill, as the mini-program does after paying."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if (await phone.bills.get(bill_id)).state == "PAID":
                    return True
            except (ApiError, httpx.TransportError):
                pass
            await asyncio.sleep(0.5)
        return False

    async def credit(self, flow: Flow, n: int) -> None:
        patient = self.patient("credit", n)
        bill_id = await self.bill(flow, patient)
        phone = self.w.api.as_token(patient.token)
        key = uuid.uuid4().hex
        body = m.PayRequest(use_personal_account=False, cash_method="credit")
        payment = await flow.persist(lambda: phone.bills.pay(bill_id, body, key=key))
        if payment.state not in ("PAID", "PAYING"):
            raise Refused(f"ANSWERED_{payment.state}")
        flow.paid_bills.add(bill_id)

    async def booking(self, flow: Flow, n: int) -> None:
        patient = self.patient("employee", n)
        phone = self.w.api.as_token(patient.token)
        session_id = self.rng.choice(self.sessions)
        await flow.persist(lambda: self.subscribe(patient, BOOKING))
        key = uuid.uuid4().hex
        held = await flow.persist(
            lambda: phone.booking.book(m.AppointmentCreate(session_id=session_id), key=key)
        )
        appointment = str(held.id)
        flow.appointments[appointment] = "HELD"  # until paid: it may expire
        pay_key = uuid.uuid4().hex
        paid = await flow.persist(lambda: phone.bills.pay(str(held.bill_id), m.PayRequest(), key=pay_key))
        if paid.state != "PAID":
            raise Refused(f"ANSWERED_{paid.state}")
        flow.appointments[appointment] = "CONFIRMED"
        if self.rng.random() < 0.33:
            cancel_key = uuid.uuid4().hex
            await flow.persist(lambda: phone.booking.cancel(appointment, key=cancel_key))
            flow.appointments[appointment] = "CANCELLED"

    async def qr(self, flow: Flow, n: int) -> None:
        patient = self.rng.choice(self.w.patients["employee"][n :: self.clients])  # one code each at a time
        phone = self.w.api.as_token(patient.token)
        code = await flow.persist(phone.ecert.qrcode)
        await flow.persist(lambda: self.w.terminal.ecert.decode(code.payload))
