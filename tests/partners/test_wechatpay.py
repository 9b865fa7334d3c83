"""WeChat Pay v3 over real HTTP against the sandbox: medical-insurance mixed orders, query, close,
refunds, and notifications that are signed, encrypted and checked."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.partners.channels import Answer, NotificationInvalid
from backend.partners.http import new_http_client
from backend.partners.wechatpay import WechatPayClient
from backend.platform.errors import AppError
from backend.settings import Settings
from tests.helpers import inject_fault, sandbox_calls
from tests.partners.channels import (
    NOWHERE,
    OPENID,
    Sandbox,
    confirm,
    load_key,
    order,
    refused_code,
    sandbox_order,
    sign_as,
)


async def test_wechat_order_gives_launch_params_the_merchant_signed(
    wechatpay: WechatPayClient, sandbox_http: Sandbox
) -> None:
    request = order(cash=4_000, fund=5_000, personal=1_000)

    launch = await wechatpay.create_order(request)

    assert launch["appId"] == "wx5a1d0c0ffee00001" and launch["signType"] == "RSA"
    assert launch["package"].startswith("prepay_id=wx")
    message = f"{launch['appId']}\n{launch['timeStamp']}\n{launch['nonceStr']}\n{launch['package']}\n"
    load_key("miniprogram_stub/keys/wechatpay-merchant-public.pem").verify(
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
    key = load_key("miniprogram_stub/keys/wechatpay-platform-private.pem")
    stamp = str(timestamp or int(time.time()))
    nonce = uuid.uuid4().hex
    signature = sign_as(key, f"{stamp}\n{nonce}\n".encode() + body + b"\n")
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
