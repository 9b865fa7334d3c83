"""The payment channels' clients, as the running backend holds them."""

import pytest

from backend.partners.alipay_trade import AlipayTradeClient
from backend.partners.wechatpay import WechatPayClient
from backend.platform.runtime import Runtime


@pytest.fixture
def wechatpay(runtime: Runtime) -> WechatPayClient:
    return runtime.partners.wechatpay


@pytest.fixture
def alipay(runtime: Runtime) -> AlipayTradeClient:
    return runtime.partners.alipay_trade
