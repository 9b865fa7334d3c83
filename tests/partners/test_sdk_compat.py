"""The stock SDKs against the sandboxes, unchanged but for their gateway: `wechatpayv3` in platform
public-key mode, `python-alipay-sdk` with RSA2. Each signs our merchant's requests and accepts the
sandbox's signed answers and notifications, or refuses them under a key that did not sign them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alipay import AliPay, AliPayValidationError
from wechatpayv3 import WeChatPay, WeChatPayType

from backend.settings import Settings
from tests.helpers import sandbox_calls
from tests.partners.channels import ALIPAY_USER, NOWHERE, OPENID, Sandbox, confirm, sandbox_order


def wechat_pay(settings: Settings, sandbox: str, platform_public_key: str | None = None) -> WeChatPay:
    """The SDK as a merchant sets it up, the platform public key (and its id) instead of certificates."""
    config = settings.wechatpay
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=config.mchid,
        private_key=config.merchant_private_key_file.read_text(),
        cert_serial_no=config.merchant_serial_no,
        appid=settings.wechat.appid,
        apiv3_key=config.apiv3_key,
        notify_url=NOWHERE,
        public_key=platform_public_key or config.platform_public_key_file.read_text(),
        public_key_id=config.platform_public_key_id,
    )
    # The SDK takes no gateway setting; its requests go to this base + `/v3/...`, signed as `/v3/...`.
    sdk._core._gate_way = sandbox
    return sdk


def alipay_sdk(settings: Settings, sandbox: str, platform_public_key: str | None = None) -> AliPay:
    config = settings.alipay
    sdk = AliPay(
        appid=config.app_id,
        app_notify_url=NOWHERE,
        app_private_key_string=config.app_private_key_file.read_text(),
        alipay_public_key_string=platform_public_key or config.platform_public_key_file.read_text(),
        sign_type="RSA2",
    )
    sdk._gateway = f"{sandbox}/alipay/gateway.do"  # no setting for it either (only `debug`: Alipay's own)
    return sdk


@pytest.fixture
def china_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """python-alipay-sdk stamps `timestamp` in the process's local time, and Alipay wants Beijing
    time within 15 minutes: the SDK works where its users are, in UTC+8."""
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def out_trade_no() -> str:
    return "SDK" + uuid.uuid4().hex[:20]


async def test_wechatpayv3_orders_and_queries_against_the_sandbox(
    settings: Settings, urls: dict[str, str], sandbox_http: Sandbox
) -> None:
    sdk, number = wechat_pay(settings, urls["sandbox"]), out_trade_no()

    # The SDK raises unless the answer's Wechatpay-Signature verifies with the platform key.
    status, text = await asyncio.to_thread(
        sdk.pay,
        description="杭州市第一人民医院-门诊缴费",
        out_trade_no=number,
        amount={"total": 4_000, "currency": "CNY"},
        payer={"openid": OPENID},
    )
    assert status == 200, text
    prepay_id = json.loads(text)["prepay_id"]
    assert (await sandbox_order(sandbox_http, "wechat", number))["prepay_id"] == prepay_id
    [call] = await sandbox_calls(sandbox_http, "wechatpay", "jsapi")
    assert call["params"]["url"] == "/v3/pay/transactions/jsapi" and call["outcome"] == "ok"

    status, text = await asyncio.to_thread(sdk.query, out_trade_no=number)
    assert status == 200 and json.loads(text)["trade_state"] == "NOTPAY"
    notification = (await confirm(sandbox_http, "wechat", number))["notification"]
    status, text = await asyncio.to_thread(sdk.query, out_trade_no=number)
    paid: dict[str, Any] = json.loads(text)
    assert (paid["trade_state"], paid["amount"]["payer_total"]) == ("SUCCESS", 4_000)

    # The payment notification: signature verified, resource decrypted with the APIv3 key.
    event = sdk.callback(notification["headers"], notification["body"])
    assert event is not None and event["event_type"] == "TRANSACTION.SUCCESS"
    assert event["resource"]["transaction_id"] == paid["transaction_id"]


async def test_wechatpayv3_closes_with_an_empty_signed_answer(
    settings: Settings, urls: dict[str, str], sandbox_http: Sandbox
) -> None:
    sdk, number = wechat_pay(settings, urls["sandbox"]), out_trade_no()
    await asyncio.to_thread(
        sdk.pay, description="挂号费", out_trade_no=number, amount={"total": 500}, payer={"openid": OPENID}
    )

    status, _ = await asyncio.to_thread(sdk.close, out_trade_no=number)

    assert status == 204
    assert (await sandbox_order(sandbox_http, "wechat", number))["state"] == "CLOSED"


async def test_wechatpayv3_refuses_answers_its_platform_key_did_not_sign(
    settings: Settings, urls: dict[str, str]
) -> None:
    someone_else = settings.alipay.platform_public_key_file.read_text()
    sdk = wechat_pay(settings, urls["sandbox"], platform_public_key=someone_else)

    with pytest.raises(Exception, match="failed to verify the signature"):  # the SDK raises only Exception
        await asyncio.to_thread(
            sdk.pay,
            description="挂号费",
            out_trade_no=out_trade_no(),
            amount={"total": 500},
            payer={"openid": OPENID},
        )


@pytest.mark.usefixtures("china_time")
async def test_python_alipay_sdk_creates_and_queries_against_the_sandbox(
    settings: Settings, urls: dict[str, str], sandbox_http: Sandbox
) -> None:
    sdk, number = alipay_sdk(settings, urls["sandbox"]), out_trade_no()

    # Sent as GET with the signed params in the query; the SDK raises unless the answer's `sign`
    # verifies over the exact `alipay_trade_create_response` text.
    created = await asyncio.to_thread(
        sdk.api_alipay_trade_create,
        subject="杭州市第一人民医院-门诊缴费",
        out_trade_no=number,
        total_amount="12.34",
        buyer_id=ALIPAY_USER,
    )
    assert created["code"] == "10000" and created["out_trade_no"] == number
    [call] = await sandbox_calls(sandbox_http, "alipay", "alipay.trade.create")
    assert call["outcome"] == "ok" and call["params"]["sign_type"] == "RSA2"

    queried = await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no=number)
    assert (queried["trade_no"], queried["trade_status"]) == (created["trade_no"], "WAIT_BUYER_PAY")
    notification = (await confirm(sandbox_http, "alipay", number))["notification"]
    queried = await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no=number)
    assert (queried["trade_status"], queried["total_amount"]) == ("TRADE_SUCCESS", "12.34")

    form = dict(notification["form"])
    assert sdk.verify(form, form.pop("sign"))  # the SDK's check of `trade_status_sync`

    # A business refusal is a signed `<method>_response` too: verified, then handed back.
    again = await asyncio.to_thread(
        sdk.api_alipay_trade_create,
        subject="改了金额",
        out_trade_no=number,
        total_amount="1.00",
        buyer_id=ALIPAY_USER,
    )
    assert (again["code"], again["sub_code"]) == ("40004", "ACQ.TRADE_HAS_SUCCESS")


@pytest.mark.usefixtures("china_time")
async def test_python_alipay_sdk_refuses_answers_its_platform_key_did_not_sign(
    settings: Settings, urls: dict[str, str]
) -> None:
    someone_else = settings.wechatpay.platform_public_key_file.read_text()
    sdk = alipay_sdk(settings, urls["sandbox"], platform_public_key=someone_else)

    with pytest.raises(AliPayValidationError):
        await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no=out_trade_no())
