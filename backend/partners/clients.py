"""Every partner client, made once per process and shared."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backend.partners.alipay import AlipayClient
from backend.partners.alipay_trade import AlipayTradeClient
from backend.partners.bank import BankClient
from backend.partners.channels import PaymentChannel
from backend.partners.ecert import EcertClient
from backend.partners.http import new_http_client
from backend.partners.wechat import WechatClient
from backend.partners.wechatpay import WechatPayClient
from backend.settings import Settings


@dataclass
class PartnerClients:
    http: httpx.AsyncClient
    wechat: WechatClient
    alipay: AlipayClient
    ecert: EcertClient
    wechatpay: WechatPayClient
    alipay_trade: AlipayTradeClient
    bank: BankClient  # every bank: each request names the bank's API base

    @classmethod
    def open(cls, settings: Settings) -> PartnerClients:
        http = new_http_client(settings.partner_http)
        alipay = AlipayClient(settings.alipay, settings.partner_http, http)
        return cls(
            http=http,
            wechat=WechatClient(settings.wechat, settings.partner_http, http),
            alipay=alipay,
            ecert=EcertClient(settings.ecert, settings.partner_http, http),
            wechatpay=WechatPayClient(settings.wechatpay, settings.wechat.appid, settings.partner_http, http),
            alipay_trade=AlipayTradeClient(alipay),
            bank=BankClient(settings.credit.request_signing_key, settings.partner_http, http),
        )

    def channel(self, name: str) -> PaymentChannel:
        """The payment channel called `name`: "wechat" (WeChat Pay) or "alipay"."""
        if name == "wechat":
            return self.wechatpay
        if name == "alipay":
            return self.alipay_trade
        raise ValueError(f"no payment channel {name!r}")

    async def aclose(self) -> None:
        await self.http.aclose()
