"""Alipay trades over real HTTP against the sandbox: create, query, close, refunds, RSA2-signed
notifications (taken however late, as Alipay sends them again for a day), and yuan <-> fen."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.audit import full_audit
from backend.billing.tables import Bill
from backend.ledger import service as ledger
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.partners.alipay_trade import AlipayTradeClient, fen_to_yuan, notify_sign_content, yuan_to_fen
from backend.partners.channels import Answer, NotificationInvalid
from backend.platform.errors import AppError
from backend.platform.tables import InboxEvent
from backend.seed import seed
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    pay,
    payer_pays,
    post_notification,
)
from tests.books import disagreements_with_the_channels
from tests.helpers import inject_fault, sandbox_calls
from tests.partners.channels import (
    ALIPAY_USER,
    CHINA,
    NOWHERE,
    Sandbox,
    confirm,
    form_body,
    load_key,
    order,
    refused_code,
    sandbox_order,
    sign_as,
)


@given(st.integers(min_value=0, max_value=10**13))
def test_fen_to_yuan_to_fen_round_trips(fen: int) -> None:
    text = fen_to_yuan(fen)
    assert yuan_to_fen(text) == fen
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["", ".0", ".5", ".50", ".05"]))
def test_yuan_with_fewer_decimals_reads_right(whole: int, decimals: str) -> None:
    expected = whole * 100 + int((decimals[1:] or "0").ljust(2, "0"))
    assert yuan_to_fen(f"{whole}{decimals}") == expected


@pytest.mark.parametrize(
    "text",
    ["1.234", "-1.00", "+1.00", "1e3", "01.00", " 1.00", "1.00 ", "1.", ".50", "１.00", "NaN", "", "1,00"],
)
def test_malformed_yuan_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="yuan"):
        yuan_to_fen(text)


async def test_alipay_trade_is_created_once(alipay: AlipayTradeClient, sandbox_http: Sandbox) -> None:
    request = order(cash=1_234, payer=ALIPAY_USER)

    launch = await alipay.create_order(request)
    again = await alipay.create_order(request)

    assert list(launch) == ["tradeNO"] and again == launch
    view = await sandbox_order(sandbox_http, "alipay", request.out_trade_no)
    assert (view["state"], view["amount_fen"], view["trade_no"]) == (
        "WAIT_BUYER_PAY",
        1_234,
        launch["tradeNO"],
    )
    calls = await sandbox_calls(sandbox_http, "alipay", "alipay.trade.create")
    biz = json.loads(calls[-1]["params"]["biz_content"])
    assert biz["total_amount"] == "12.34" and biz["buyer_id"] == ALIPAY_USER
    assert biz["product_code"] == "JSAPI_PAY" and calls[-1]["params"]["notify_url"] == NOWHERE
    with pytest.raises(AppError) as refused:
        await alipay.create_order(order(cash=1_235, payer=ALIPAY_USER, out_trade_no=request.out_trade_no))
    assert refused_code(refused) == "ACQ.CONTEXT_INCONSISTENT"


async def test_alipay_payment_is_queried_and_notified(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=9_999, payer=ALIPAY_USER)
    launch = await alipay.create_order(request)
    assert (await alipay.query_order(request.out_trade_no)).state == "PENDING"

    paid = await confirm(sandbox_http, "alipay", request.out_trade_no)

    status = await alipay.query_order(request.out_trade_no)
    assert (status.state, status.amount_fen, status.transaction_id) == ("PAID", 9_999, launch["tradeNO"])
    assert status.merchant_id == "2021000000000001" and status.paid_at is not None
    form = paid["notification"]["form"]
    assert form["total_amount"] == "99.99" and form["notify_type"] == "trade_status_sync"
    event = alipay.verify_notification({}, form_body(form))
    assert (event.channel, event.kind, event.state, event.amount_fen) == ("alipay", "payment", "PAID", 9_999)
    assert event.event_id == form["notify_id"] and event.transaction_id == launch["tradeNO"]
    assert event.merchant_id == "2021000000000001" and event.occurred_at == status.paid_at
    assert "sign" not in event.payload and event.payload["seller_id"] == "2088000000000001"
    assert alipay.acknowledge() == Answer(200, "text/plain", b"success")
    assert alipay.refuse("no") == Answer(400, "text/plain", b"fail")


async def test_alipay_notifications_that_cannot_be_trusted_are_refused(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(payer=ALIPAY_USER)
    await alipay.create_order(request)
    form = (await confirm(sandbox_http, "alipay", request.out_trade_no))["notification"]["form"]
    key = load_key("miniprogram_stub/keys/alipay-platform-private.pem")

    def resigned(changed: dict[str, str]) -> dict[str, str]:
        fields = {k: v for k, v in (form | changed).items() if k != "sign"}
        return fields | {"sign": sign_as(key, notify_sign_content(fields).encode())}

    assert alipay.verify_notification({}, form_body(resigned({}))).state == "PAID"
    without_time = {k: v for k, v in resigned({}).items() if k != "notify_time"}
    without_time["sign"] = sign_as(key, notify_sign_content(without_time).encode())
    gateway_rule = form | {
        "sign": sign_as(key, "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k != "sign").encode())
    }
    cases = [
        (form | {"total_amount": "0.01"}, "does not verify"),
        ({k: v for k, v in form.items() if k != "sign"}, "unsigned"),
        (form | {"sign_type": "RSA"}, "unsigned"),
        (gateway_rule, "does not verify"),  # signed over sign_type too: not the notification rule
        (without_time, "malformed"),
        (resigned({"notify_time": "2026/12/01 10:00:00"}), "malformed"),
        (resigned({"notify_time": "1764554400"}), "malformed"),
        (resigned({"seller_id": "2088999999999999"}), "another seller"),
        (resigned({"total_amount": "1.001"}), "malformed"),
        (resigned({"trade_status": "WAIT_BUYER_PAY"}), "malformed"),
    ]
    for case, reason in cases:
        with pytest.raises(NotificationInvalid, match=reason):
            alipay.verify_notification({}, form_body(case))
    with pytest.raises(NotificationInvalid):
        alipay.verify_notification({}, b"\xff\xfe")


async def test_alipay_close_unpaid_closes_and_close_paid_says_paid(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    unpaid, paid = order(payer=ALIPAY_USER), order(payer=ALIPAY_USER)
    for request in (unpaid, paid):
        await alipay.create_order(request)
    await confirm(sandbox_http, "alipay", paid.out_trade_no)

    closed = await alipay.close_order(unpaid.out_trade_no)
    not_closed = await alipay.close_order(paid.out_trade_no)

    assert closed.state == "CLOSED" and (await alipay.query_order(unpaid.out_trade_no)).state == "CLOSED"
    assert not_closed.state == "PAID" and not_closed.amount_fen == paid.cash_fen
    assert (await alipay.close_order(unpaid.out_trade_no)).state == "CLOSED"  # closing again is harmless
    assert (await alipay.close_order("T" + uuid.uuid4().hex)).state == "NOT_FOUND"
    assert (await alipay.query_order("T" + uuid.uuid4().hex)).state == "NOT_FOUND"


async def test_alipay_refunds_partly_twice_never_doubles_and_never_exceeds(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=10_000, payer=ALIPAY_USER)
    await alipay.create_order(request)
    await confirm(sandbox_http, "alipay", request.out_trade_no)
    otn = request.out_trade_no

    first = await alipay.refund(otn, "R1" + otn, 3_000, 10_000, "退号", "")
    repeated = await alipay.refund(otn, "R1" + otn, 3_000, 10_000, "退号", "")
    second = await alipay.refund(otn, "R2" + otn, 5_000, 10_000, "退药", "")
    with pytest.raises(AppError) as over:
        await alipay.refund(otn, "R3" + otn, 2_001, 10_000, "", "")

    assert (first.state, first.amount_fen) == ("SUCCEEDED", 3_000)
    assert (repeated.state, repeated.amount_fen) == ("SUCCEEDED", 3_000)
    assert second.amount_fen == 5_000
    assert refused_code(over) == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    refunds = await sandbox_calls(sandbox_http, "alipay", "alipay.trade.refund")
    assert [json.loads(c["params"]["biz_content"])["refund_amount"] for c in refunds] == [
        "30.00",
        "30.00",
        "50.00",
        "20.01",
    ]
    assert (await sandbox_order(sandbox_http, "alipay", otn))["refunded_fen"] == 8_000
    queried = await alipay.query_refund(otn, "R2" + otn)
    assert (queried.state, queried.amount_fen) == ("SUCCEEDED", 5_000)
    assert (await alipay.query_refund(otn, "R3" + otn)).state == "NOT_FOUND"
    # Refunded in full, the trade closes; it was paid all the same.
    await alipay.refund(otn, "R3" + otn, 2_000, 10_000, "", "")
    assert (await sandbox_order(sandbox_http, "alipay", otn))["state"] == "TRADE_CLOSED"
    assert (await alipay.query_order(otn)).state == "PAID"


async def test_alipay_refund_notification(alipay: AlipayTradeClient, sandbox_http: Sandbox) -> None:
    request = order(cash=6_000, payer=ALIPAY_USER)
    await alipay.create_order(request)
    await confirm(sandbox_http, "alipay", request.out_trade_no)
    await alipay.refund(request.out_trade_no, "RA" + request.out_trade_no, 1_000, 6_000, "", "")
    await alipay.refund(request.out_trade_no, "RB" + request.out_trade_no, 1_500, 6_000, "", "")

    answer = await sandbox_http.get(f"/_sandbox/pay/alipay/refunds/RB{request.out_trade_no}/notification")

    assert answer.status_code == 200
    form = answer.json()["form"]
    assert form["out_biz_no"] == "RB" + request.out_trade_no and form["refund_fee"] == "25.00"
    event = alipay.verify_notification({}, form_body(form))
    assert (event.kind, event.state, event.out_refund_no) == (
        "refund",
        "SUCCEEDED",
        "RB" + request.out_trade_no,
    )
    assert event.amount_fen == 2_500  # Alipay tells the total refunded so far
    assert event.occurred_at is not None


async def test_alipay_a_failed_payment_closes_the_trade(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(payer=ALIPAY_USER)
    await alipay.create_order(request)

    failed = await confirm(sandbox_http, "alipay", request.out_trade_no, outcome="fail")

    event = alipay.verify_notification({}, form_body(failed["notification"]["form"]))
    assert (event.kind, event.state) == ("payment", "CLOSED")
    assert (await alipay.query_order(request.out_trade_no)).state == "CLOSED"


async def test_alipay_notification_with_changed_fields_is_signed_but_says_so(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=4_000, payer=ALIPAY_USER)
    await alipay.create_order(request)
    answer = await sandbox_http.post(
        "/_sandbox/pay/alipay/notification",
        json={
            "out_trade_no": request.out_trade_no,
            "overrides": {"amount_fen": 1, "merchant_id": "2021000000000999"},
        },
    )
    assert answer.status_code == 200, answer.text

    event = alipay.verify_notification({}, form_body(answer.json()["form"]))

    assert (event.amount_fen, event.merchant_id, event.state) == (1, "2021000000000999", "PAID")
    assert (await sandbox_order(sandbox_http, "alipay", request.out_trade_no))["state"] == "WAIT_BUYER_PAY"


async def test_alipay_5xx_and_busy_answers_are_retried(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    request = order(payer=ALIPAY_USER)
    await inject_fault(sandbox_http, partner="alipay", api="alipay.trade.create", times=1, http_status=502)
    await inject_fault(sandbox_http, partner="alipay", api="alipay.trade.query", times=1, code="20000")

    await alipay.create_order(request)
    status = await alipay.query_order(request.out_trade_no)

    assert status.state == "PENDING"
    creates = await sandbox_calls(sandbox_http, "alipay", "alipay.trade.create")
    assert [c["outcome"] for c in creates][-2:] == ["http:502", "ok"]
    queries = await sandbox_calls(sandbox_http, "alipay", "alipay.trade.query")
    assert [c["outcome"] for c in queries][-2:] == ["20000", "ok"]


async def test_a_genuine_alipay_notification_twenty_hours_old_is_applied_once(
    client, sandbox_http: Sandbox, settings, run_worker
) -> None:
    """Alipay sends an unacknowledged notification again for about 25 hours, its notify_time
    unchanged: a late one is taken, and a replay of it changes nothing."""
    await seed()
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident", channel="alipay")
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    started = (await pay(client, patient, bill["id"], cash_method="alipay")).json()
    form = (await payer_pays(sandbox_http, "alipay", started["out_trade_no"]))["form"]
    key = load_key("miniprogram_stub/keys/alipay-platform-private.pem")
    late = {k: v for k, v in form.items() if k != "sign"}
    late["notify_time"] = (datetime.now(CHINA) - timedelta(hours=20)).strftime("%Y-%m-%d %H:%M:%S")
    late["sign"] = sign_as(key, notify_sign_content(late).encode())

    first = await post_notification(client, "alipay", {"form": late})
    await run_worker()

    async def books() -> tuple[object, ...]:
        return (
            await InboxEvent.count(),
            await Journal.count(),
            await ledger.balance(ledger.channel_clearing("alipay")),
            await Notification.count(),
            (await Bill.select(Bill.state, Bill.paid_at).first()),
        )

    assert (first.status_code, first.text) == (200, "success")
    applied = await books()
    assert applied[0] == 1 and applied[2] == -started["cash_fen"] and applied[4]["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1

    replays = [await post_notification(client, "alipay", {"form": late}) for _ in range(3)]
    await run_worker()

    assert {(r.status_code, r.text) for r in replays} == {(200, "success")}
    assert await books() == applied
    problems, _ = await full_audit()
    assert problems + await disagreements_with_the_channels(sandbox_http) == []


async def test_the_sandbox_sends_an_alipay_notification_again_unchanged(
    alipay: AlipayTradeClient, sandbox_http: Sandbox
) -> None:
    """A refused notification comes again as the very same form: notify_id, notify_time, sign."""
    bodies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            length = int(value) if name.strip().lower() == "content-length" else length
        bodies.append(await reader.readexactly(length))
        answer = alipay.refuse("busy") if len(bodies) == 1 else alipay.acknowledge()
        writer.write(
            f"HTTP/1.1 {answer.status_code} X\r\nContent-Length: {len(answer.body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + answer.body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1/payments/notify/alipay"
    try:
        request = order(payer=ALIPAY_USER, notify_url=url)
        await alipay.create_order(request)
        await confirm(sandbox_http, "alipay", request.out_trade_no, deliver=True)
        deadline = time.monotonic() + 15
        while not (await sandbox_order(sandbox_http, "alipay", request.out_trade_no))["deliveries"][0][
            "delivered"
        ]:
            assert time.monotonic() < deadline, bodies
            await asyncio.sleep(0.1)
    finally:
        server.close()
        await server.wait_closed()

    [delivery] = (await sandbox_order(sandbox_http, "alipay", request.out_trade_no))["deliveries"]
    assert delivery["attempts"] == ["HTTP 400", "HTTP 200"]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # a second later: a fresh notify_time would differ
    form = dict(parse_qsl(bodies[1].decode()))
    assert form["notify_id"] == delivery["event_id"] and form["notify_time"]
    assert alipay.verify_notification({}, bodies[1]).event_id == delivery["event_id"]
