"""Every partner client, made once per process and shared."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backend.partners.alipay import AlipayClient
from backend.partners.ecert import EcertClient
from backend.partners.http import new_http_client
from backend.partners.wechat import WechatClient
from backend.settings import Settings


@dataclass
class PartnerClients:
    http: httpx.AsyncClient
    wechat: WechatClient
    alipay: AlipayClient
    ecert: EcertClient

    @classmethod
    def open(cls, settings: Settings) -> PartnerClients:
        http = new_http_client(settings.partner_http)
        return cls(
            http=http,
            wechat=WechatClient(settings.wechat, settings.partner_http, http),
            alipay=AlipayClient(settings.alipay, settings.partner_http, http),
            ecert=EcertClient(settings.ecert, settings.partner_http, http),
        )

    async def aclose(self) -> None:
        await self.http.aclose()
