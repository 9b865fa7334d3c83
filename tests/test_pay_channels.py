"""Payment channels over real HTTP against the sandbox: WeChat Pay v3 (medical-insurance mixed
payment) and Alipay trades: orders, payment, query, close, refunds, signed notifications."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from backend.partners.alipay_trade import AlipayTradeClient, fen_to_yuan, notify_sign_content, yuan_to_fen
from backend.partners.channels import Answer, NotificationInvalid, OrderRequest, PaymentChannel
from backend.partners.clients import PartnerClients
from backend.partners.http import new_http_client
from backend.partners.wechatpay import WechatPayClient
from backend.platform.errors import AppError
from backend.platform.runtime import Runtime
from backend.settings import Settings
from tests.helpers import inject_fault, sandbox_calls
from tests.servers import ROOT

Sandbox = httpx.AsyncClient
CHINA = ZoneInfo("Asia/Shanghai")
NOWHERE = "http://127.0.0.1:9/notify"  # the discard port: nothing listens, nothing leaves the machine
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ALIPAY_USER = "2088102146225135"


def _key(name: str) -> Any:
    pem = (ROOT / name).read_bytes()
    if b"PRIVATE" in pem:
        return serialization.load_pem_private_key(pem, None)
    return serialization.load_pem_public_key(pem)


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def order(
    cash: int = 4_000, fund: int = 5_000, personal: int = 1_000, payer: str = OPENID, **changes: Any
) -> OrderRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "T" + uuid.uuid4().hex[:24],
        "payer_id": payer,
        "description": "杭州市第一人民医院-门诊缴费",
        "total_fen": cash + fund + personal,
        "cash_fen": cash,
        "fund_fen": fund,
        "personal_account_fen": personal,
        "order_type": "DIAG",
        "institution_code": "H33010001",
        "institution_name": "杭州市第一人民医院",
        "notify_url": NOWHERE,
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
    }
    return OrderRequest(**(fields | changes))


@pytest.fixture
def wechatpay(runtime: Runtime) -> WechatPayClient:
    return runtime.partners.wechatpay


@pytest.fixture
def alipay(runtime: Runtime) -> AlipayTradeClient:
    return runtime.partners.alipay_trade


async def confirm(sandbox: Sandbox, channel: str, out_trade_no: str, **extra: Any) -> dict[str, Any]:
    answer = await sandbox.post(
        f"/_sandbox/pay/{channel}/confirm", json={"out_trade_no": out_trade_no, "deliver": False, **extra}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def sandbox_order(sandbox: Sandbox, channel: str, out_trade_no: str) -> dict[str, Any]:
    answer = await sandbox.get(f"/_sandbox/pay/{channel}/orders/{out_trade_no}")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def refused_code(exc: pytest.ExceptionInfo[AppError]) -> str:
    assert exc.value.code == "PARTNER_REJECTED"
    return str(exc.value.detail["platform_code"])


def form_body(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()


# -- WeChat Pay -------------------------------------------------------------------------------


async def test_wechat_order_gives_launch_params_the_merchant_signed(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=4_000, fund=5_000, personal=1_000)

    launch = await wechatpay.create_order(request)

    assert launch["appId"] == "wx5a1d0c0ffee00001" and launch["signType"] == "RSA"
    assert launch["package"].startswith("prepay_id=wx")
    message = f"{launch['appId']}\n{launch['timeStamp']}\n{launch['nonceStr']}\n{launch['package']}\n"
    _key("miniprogram_stub/keys/wechatpay-merchant-public.pem").verify(
        base64.b64decode(launch["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    view = await sandbox_order(sandbox_http, "wechat", request.out_trade_no)
    assert view["state"] == "NOTPAY" and view["amount_fen"] == 4_000
    assert view["mix_trade_no"] == launch["mixTradeNo"]
    assert view["prepay_id"] == launch["package"].removeprefix("prepay_id=")
    med_ins = view["med_ins"]
    assert med_ins["mix_pay_type"] == "CASH_AND_INSURANCE" and med_ins["order_type"] == "DIAG_PAY"
    assert (med_ins["total_fee"], med_ins["med_ins_gov_fee"], med_ins["med_ins_self_fee"]) == (
        10_000,
        5_000,
        1_000,
    )
    assert med_ins["med_ins_cash_fee"] == med_ins["wechat_pay_cash_fee"] == 4_000


async def test_wechat_the_same_order_again_is_the_same_order_and_another_is_refused(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order()
    first = await wechatpay.create_order(request)

    again = await wechatpay.create_order(request)

    assert (again["mixTradeNo"], again["package"]) == (first["mixTradeNo"], first["package"])
    changed = order(cash=4_001, out_trade_no=request.out_trade_no)
    with pytest.raises(AppError) as refused:
        await wechatpay.create_order(changed)
    assert refused_code(refused) == "INVALID_REQUEST"
    assert "out_trade_no already used" in refused.value.detail["platform_message"]
    assert (await sandbox_order(sandbox_http, "wechat", request.out_trade_no))["amount_fen"] == 4_000


async def test_wechat_cash_only_order(wechatpay: WechatPayClient, sandbox_http: Sandbox) -> None:
    request = order(cash=2_500, fund=0, personal=0, order_type="REG")
    await wechatpay.create_order(request)
    med_ins = (await sandbox_order(sandbox_http, "wechat", request.out_trade_no))["med_ins"]
    assert med_ins["mix_pay_type"] == "CASH_ONLY" and med_ins["order_type"] == "REG_PAY"
    assert med_ins["total_fee"] == med_ins["wechat_pay_cash_fee"] == 2_500
    assert med_ins["med_ins_cash_fee"] == 0


async def test_wechat_payment_is_queried_and_notified(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=4_000)
    await wechatpay.create_order(request)
    pending = await wechatpay.query_order(request.out_trade_no)
    assert (pending.state, pending.amount_fen, pending.transaction_id) == ("PENDING", 4_000, None)

    paid = await confirm(sandbox_http, "wechat", request.out_trade_no)

    status = await wechatpay.query_order(request.out_trade_no)
    assert status.state == "PAID" and status.amount_fen == 4_000 and status.merchant_id == "1900000001"
    assert status.transaction_id and status.transaction_id.startswith("4200")
    assert status.paid_at is not None and abs((datetime.now(UTC) - status.paid_at).total_seconds()) < 60
    notification = paid["notification"]
    assert notification["url"] == NOWHERE
    event = wechatpay.verify_notification(notification["headers"], notification["body"].encode())
    assert (event.channel, event.kind, event.state) == ("wechat", "payment", "PAID")
    assert event.out_trade_no == request.out_trade_no and event.amount_fen == 4_000
    assert event.merchant_id == "1900000001" and event.transaction_id == status.transaction_id
    assert event.event_id == json.loads(notification["body"])["id"]
    assert event.occurred_at == status.paid_at
    assert event.payload["event_type"] == "TRANSACTION.SUCCESS"
    assert event.payload["resource"]["payer"]["openid"] == OPENID
    json.dumps(event.payload)  # JSON-able, for the inbox
    # WeChat Pay sends the same event again until it is acknowledged: same id, fresh signature.
    again = await confirm(sandbox_http, "wechat", request.out_trade_no)
    assert again["notification"]["body"] == notification["body"]
    replayed = wechatpay.verify_notification(
        again["notification"]["headers"], again["notification"]["body"].encode()
    )
    assert replayed.event_id == event.event_id
    assert wechatpay.acknowledge() == Answer(204, "application/json", b"")
    refusal = wechatpay.refuse("bad signature")
    assert refusal.status_code == 400 and json.loads(refusal.body) == {
        "code": "FAIL",
        "message": "bad signature",
    }


def _resigned(headers: dict[str, str], body: bytes, timestamp: int | None = None) -> dict[str, str]:
    key = _key("miniprogram_stub/keys/wechatpay-platform-private.pem")
    stamp = str(timestamp or int(time.time()))
    nonce = uuid.uuid4().hex
    signature = _sign(key, f"{stamp}\n{nonce}\n".encode() + body + b"\n")
    return headers | {
        "Wechatpay-Timestamp": stamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
    }


async def test_wechat_notifications_that_cannot_be_trusted_are_refused(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order()
    await wechatpay.create_order(request)
    notification = (await confirm(sandbox_http, "wechat", request.out_trade_no))["notification"]
    headers, body = notification["headers"], notification["body"].encode()
    envelope = json.loads(body)
    # Our own re-signing is accepted: the refusals below are for the reason named.
    assert wechatpay.verify_notification(_resigned(headers, body), body).state == "PAID"

    tampered = body.replace(b'"summary":"', b'"summary":"x')
    stale = _resigned(headers, body, int(time.time()) - 6 * 60)
    future = _resigned(headers, body, int(time.time()) + 6 * 60)
    unknown_serial = headers | {"Wechatpay-Serial": "PUB_KEY_ID_0119000000012026112200000002"}
    other_signature = headers | {"Wechatpay-Signature": _resigned(headers, b"{}")["Wechatpay-Signature"]}
    other_key = AESGCM(b"0" * 32)
    resource = envelope["resource"]
    foreign = other_key.encrypt(resource["nonce"].encode(), b'{"out_trade_no":"x"}', b"transaction")
    undecryptable = json.dumps(
        envelope | {"resource": resource | {"ciphertext": base64.b64encode(foreign).decode()}}
    ).encode()
    cases = [
        (headers, tampered, "does not verify"),
        (stale, body, "window"),
        (future, body, "window"),
        (unknown_serial, body, "unknown Wechatpay-Serial"),
        (other_signature, body, "does not verify"),
        ({k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body, "does not verify"),
        (_resigned(headers, undecryptable), undecryptable, "decrypt"),
        (_resigned(headers, b"[]"), b"[]", "malformed"),
    ]
    for case_headers, case_body, reason in cases:
        with pytest.raises(NotificationInvalid, match=reason):
            wechatpay.verify_notification(case_headers, case_body)


async def test_wechat_close_unpaid_closes_and_close_paid_says_paid(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    unpaid, paid = order(), order()
    for request in (unpaid, paid):
        await wechatpay.create_order(request)
    await confirm(sandbox_http, "wechat", paid.out_trade_no)

    closed = await wechatpay.close_order(unpaid.out_trade_no)
    not_closed = await wechatpay.close_order(paid.out_trade_no)

    assert closed.state == "CLOSED"
    assert (await wechatpay.query_order(unpaid.out_trade_no)).state == "CLOSED"
    too_late = await sandbox_http.post(
        "/_sandbox/pay/wechat/confirm", json={"out_trade_no": unpaid.out_trade_no}
    )
    assert too_late.status_code == 409
    assert not_closed.state == "PAID" and not_closed.amount_fen == paid.cash_fen
    assert (await sandbox_calls(sandbox_http, "wechatpay", "close"))[-1]["outcome"] == "ORDERPAID"
    assert (await wechatpay.close_order("T" + uuid.uuid4().hex)).state == "NOT_FOUND"
    assert (await wechatpay.query_order("T" + uuid.uuid4().hex)).state == "NOT_FOUND"


async def test_wechat_refunds_partly_twice_never_doubles_and_never_exceeds(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=10_000)
    await wechatpay.create_order(request)
    await confirm(sandbox_http, "wechat", request.out_trade_no)
    otn = request.out_trade_no

    first = await wechatpay.refund(otn, "R1" + otn, 3_000, 10_000, "退号", "")
    repeated = await wechatpay.refund(otn, "R1" + otn, 3_000, 10_000, "退号", "")
    second = await wechatpay.refund(otn, "R2" + otn, 5_000, 10_000, "退药", "")
    with pytest.raises(AppError) as over:
        await wechatpay.refund(otn, "R3" + otn, 2_001, 10_000, "", "")

    assert (first.state, first.amount_fen) == ("PROCESSING", 3_000) and first.refund_id
    assert repeated.refund_id == first.refund_id and repeated.state == "SUCCEEDED"
    assert second.amount_fen == 5_000 and second.refund_id != first.refund_id
    assert refused_code(over) == "INVALID_REQUEST"
    queried = await wechatpay.query_refund(otn, "R1" + otn)
    assert (queried.state, queried.amount_fen, queried.refund_id) == ("SUCCEEDED", 3_000, first.refund_id)
    assert (await wechatpay.query_refund(otn, "R3" + otn)).state == "NOT_FOUND"
    view = await sandbox_order(sandbox_http, "wechat", otn)
    assert view["refunded_fen"] == 8_000 and len(view["refunds"]) == 2
    assert (await wechatpay.query_order(otn)).state == "PAID"  # trade_state REFUND: paid, partly refunded
    last = await wechatpay.refund(otn, "R3" + otn, 2_000, 10_000, "", "")
    assert last.amount_fen == 2_000
    assert (await sandbox_order(sandbox_http, "wechat", otn))["refunded_fen"] == 10_000


async def test_wechat_refund_of_an_unpaid_order_is_refused(wechatpay: WechatPayClient) -> None:
    request = order()
    await wechatpay.create_order(request)
    with pytest.raises(AppError) as refused:
        await wechatpay.refund(request.out_trade_no, "R" + request.out_trade_no, 100, 4_000, "", "")
    assert refused_code(refused) == "INVALID_REQUEST"


async def test_wechat_refund_notification(wechatpay: WechatPayClient, sandbox_http: Sandbox) -> None:
    request = order(cash=6_000)
    await wechatpay.create_order(request)
    await confirm(sandbox_http, "wechat", request.out_trade_no)
    refund = await wechatpay.refund(request.out_trade_no, "RF" + request.out_trade_no, 2_500, 6_000, "", "")

    answer = await sandbox_http.get(f"/_sandbox/pay/wechat/refunds/RF{request.out_trade_no}/notification")

    assert answer.status_code == 200
    notification = answer.json()
    event = wechatpay.verify_notification(notification["headers"], notification["body"].encode())
    assert (event.kind, event.state, event.amount_fen) == ("refund", "SUCCEEDED", 2_500)
    assert event.out_refund_no == "RF" + request.out_trade_no and event.out_trade_no == request.out_trade_no
    assert event.payload["resource"]["refund_id"] == refund.refund_id
    assert event.payload["event_type"] == "REFUND.SUCCESS"


async def test_wechat_notification_with_changed_fields_is_signed_but_says_so(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=4_000)
    await wechatpay.create_order(request)
    answer = await sandbox_http.post(
        "/_sandbox/pay/wechat/notification",
        json={
            "out_trade_no": request.out_trade_no,
            "overrides": {"amount_fen": 1, "merchant_id": "1900000099"},
        },
    )
    assert answer.status_code == 200, answer.text
    forged = answer.json()

    event = wechatpay.verify_notification(forged["headers"], forged["body"].encode())

    assert (event.amount_fen, event.merchant_id, event.state) == (1, "1900000099", "PAID")
    assert (await sandbox_order(sandbox_http, "wechat", request.out_trade_no))["state"] == "NOTPAY"
    failed = await sandbox_http.post(
        "/_sandbox/pay/wechat/notification",
        json={"out_trade_no": request.out_trade_no, "overrides": {"trade_state": "PAYERROR"}},
    )
    body = failed.json()
    assert wechatpay.verify_notification(body["headers"], body["body"].encode()).state == "FAILED"


async def test_wechat_a_failed_payment_is_seen_by_query(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order()
    await wechatpay.create_order(request)
    failed = await confirm(sandbox_http, "wechat", request.out_trade_no, outcome="fail")
    assert failed["state"] == "PAYERROR" and failed["notification"] is None
    assert (await wechatpay.query_order(request.out_trade_no)).state == "FAILED"


async def test_wechat_5xx_is_retried_and_persisting_5xx_is_unavailable(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order()
    await inject_fault(sandbox_http, partner="wechatpay", api="jsapi", times=1, http_status=503)
    await inject_fault(sandbox_http, partner="wechatpay", api="med-ins", times=1, code="SYSTEM_ERROR")

    launch = await wechatpay.create_order(request)

    assert launch["mixTradeNo"]
    jsapi = await sandbox_calls(sandbox_http, "wechatpay", "jsapi")
    assert [c["outcome"] for c in jsapi] == ["http:503", "ok"]
    med_ins = await sandbox_calls(sandbox_http, "wechatpay", "med-ins")
    assert [c["outcome"] for c in med_ins] == ["SYSTEM_ERROR", "ok"]
    await inject_fault(sandbox_http, partner="wechatpay", api="query", times=3, http_status=500)
    with pytest.raises(AppError) as unavailable:
        await wechatpay.query_order(request.out_trade_no)
    assert unavailable.value.code == "PARTNER_UNAVAILABLE" and unavailable.value.status_code == 503


async def test_wechat_answers_under_another_key_are_refused_and_bad_requests_too(
    settings: Settings, sandbox_http: Sandbox, tmp_path: Any
) -> None:
    other = rsa.generate_private_key(65537, 2048)
    public = tmp_path / "other-public.pem"
    public.write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private = tmp_path / "other-private.pem"
    private.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    async with new_http_client(settings.partner_http) as http:
        fooled = msgspec.structs.replace(settings.wechatpay, platform_public_key_file=public)
        client = WechatPayClient(fooled, settings.wechat.appid, settings.partner_http, http)
        with pytest.raises(AppError) as forged:
            await client.query_order("T" + uuid.uuid4().hex)
        assert forged.value.code == "PARTNER_SIGNATURE_INVALID"

        impostor = msgspec.structs.replace(settings.wechatpay, merchant_private_key_file=private)
        client = WechatPayClient(impostor, settings.wechat.appid, settings.partner_http, http)
        with pytest.raises(AppError) as unsigned:
            await client.query_order("T" + uuid.uuid4().hex)
        assert refused_code(unsigned) == "SIGN_ERROR"


# -- Alipay -----------------------------------------------------------------------------------


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
    key = _key("miniprogram_stub/keys/alipay-platform-private.pem")

    def resigned(changed: dict[str, str]) -> dict[str, str]:
        fields = {k: v for k, v in (form | changed).items() if k != "sign"}
        return fields | {"sign": _sign(key, notify_sign_content(fields).encode())}

    assert alipay.verify_notification({}, form_body(resigned({}))).state == "PAID"
    stale = (datetime.now(CHINA) - timedelta(minutes=6)).strftime("%Y-%m-%d %H:%M:%S")
    gateway_rule = form | {
        "sign": _sign(key, "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k != "sign").encode())
    }
    cases = [
        (form | {"total_amount": "0.01"}, "does not verify"),
        ({k: v for k, v in form.items() if k != "sign"}, "unsigned"),
        (form | {"sign_type": "RSA"}, "unsigned"),
        (gateway_rule, "does not verify"),  # signed over sign_type too: not the notification rule
        (resigned({"notify_time": stale}), "window"),
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


# -- both -------------------------------------------------------------------------------------


def test_channels_by_name(runtime: Runtime) -> None:
    partners: PartnerClients = runtime.partners
    assert partners.channel("wechat") is partners.wechatpay
    assert partners.channel("alipay") is partners.alipay_trade
    assert partners.wechatpay.merchant_id == "1900000001"
    assert partners.alipay_trade.merchant_id == "2021000000000001"
    with pytest.raises(ValueError, match="channel"):
        partners.channel("unionpay")


class Receiver:
    """Our notify endpoint, minimal: refuses the first `busy` posts with 500, then verifies."""

    def __init__(self, channel: PaymentChannel, busy: int) -> None:
        self.channel, self.busy = channel, busy
        self.events: list[Any] = []
        self.posts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip()] = value.strip()
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
        body = await reader.readexactly(length)
        self.posts += 1
        if self.posts <= self.busy:
            answer = Answer(500, "text/plain", b"busy")
        else:
            try:
                self.events.append(self.channel.verify_notification(headers, body))
                answer = self.channel.acknowledge()
            except NotificationInvalid as exc:
                answer = self.channel.refuse(str(exc))
        head = f"HTTP/1.1 {answer.status_code} X\r\nContent-Type: {answer.media_type}\r\n"
        writer.write(
            f"{head}Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode() + answer.body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver_url() -> AsyncIterator[Any]:
    servers: list[asyncio.Server] = []

    async def serve(receiver: Receiver) -> str:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/pay/notify"

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["wechat", "alipay"])
async def test_the_sandbox_delivers_notifications_until_acknowledged(
    name: str, runtime: Runtime, sandbox_http: Sandbox, receiver_url: Any
) -> None:
    channel = runtime.partners.channel(name)
    receiver = Receiver(channel, busy=1)
    url = await receiver_url(receiver)
    request = order(cash=3_000, payer=OPENID if name == "wechat" else ALIPAY_USER, notify_url=url)
    await channel.create_order(request)

    await confirm(sandbox_http, name, request.out_trade_no, deliver=True)

    deadline = time.monotonic() + 10
    while not (deliveries := (await sandbox_order(sandbox_http, name, request.out_trade_no))["deliveries"])[
        0
    ]["delivered"]:
        assert time.monotonic() < deadline, deliveries
        await asyncio.sleep(0.1)
    assert deliveries[0]["attempts"] == ["HTTP 500", f"HTTP {channel.acknowledge().status_code}"]
    assert deliveries[0]["url"] == url and deliveries[0]["kind"] == "payment"
    [event] = receiver.events
    assert (event.out_trade_no, event.state, event.amount_fen) == (request.out_trade_no, "PAID", 3_000)
    assert event.event_id == deliveries[0]["event_id"]


async def test_refund_notifications_are_delivered_to_the_refund_notify_url(
    wechatpay: WechatPayClient, sandbox_http: Sandbox, receiver_url: Any
) -> None:
    receiver = Receiver(wechatpay, busy=0)
    url = await receiver_url(receiver)
    request = order(cash=3_000)
    await wechatpay.create_order(request)
    await confirm(sandbox_http, "wechat", request.out_trade_no)

    await wechatpay.refund(request.out_trade_no, "RN" + request.out_trade_no, 1_200, 3_000, "", url)

    deadline = time.monotonic() + 10
    while not receiver.events:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [event] = receiver.events
    assert (event.kind, event.out_refund_no, event.amount_fen) == (
        "refund",
        "RN" + request.out_trade_no,
        1_200,
    )
