"""WeChat's mini-program server API: exchanging a `wx.login()` code for the user's openid."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import structlog

from backend.partners.http import TransientPartnerError, with_retries
from backend.platform.errors import AppError, PartnerUnavailable, Unauthorized
from backend.settings import PartnerHttpSettings, WechatSettings

log = structlog.get_logger(__name__)

BUSY = -1
INVALID_CODE = 40029
CODE_USED = 40163
RATE_LIMITED = 45011


class WechatSession(msgspec.Struct, frozen=True):
    openid: str
    unionid: str | None = None
    # session_key decrypts the user's encrypted data; we need none of it, so it is never kept.


class _Answer(msgspec.Struct):
    openid: str | None = None
    unionid: str | None = None
    errcode: int = 0
    errmsg: str = ""


class WechatClient:
    partner = "wechat"

    def __init__(
        self, settings: WechatSettings, http_settings: PartnerHttpSettings, http: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.http_settings = http_settings
        self.http = http

    async def jscode2session(self, code: str) -> WechatSession:
        answer = await with_retries(self.http_settings, self.partner, lambda: self._call(code))
        if answer.errcode in (INVALID_CODE, CODE_USED):
            raise Unauthorized(
                "the login code is invalid, expired or already used; call wx.login() again",
                code="LOGIN_CODE_INVALID",
                detail={"field": "code", "channel": "wechat", "platform_code": answer.errcode},
            )
        if answer.errcode == RATE_LIMITED:
            raise PartnerUnavailable(
                "WeChat is limiting our requests; try again in a minute",
                code="PARTNER_RATE_LIMITED",
                detail={"partner": self.partner, "platform_code": answer.errcode},
                headers={"Retry-After": "60"},
            )
        if answer.errcode or not answer.openid:
            log.error("wechat rejected jscode2session", errcode=answer.errcode, errmsg=answer.errmsg)
            raise AppError(
                "WeChat refused the login",
                code="PARTNER_REJECTED",
                status_code=502,
                detail={"partner": self.partner, "platform_code": answer.errcode},
            )
        return WechatSession(openid=answer.openid, unionid=answer.unionid)

    async def _call(self, code: str) -> _Answer:
        params: dict[str, Any] = {
            "appid": self.settings.appid,
            "secret": self.settings.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        response = await self.http.get(f"{self.settings.api_base}/sns/jscode2session", params=params)
        if response.status_code >= 500:
            raise TransientPartnerError(self.partner, f"HTTP {response.status_code}")
        try:
            answer = msgspec.json.decode(response.content, type=_Answer)
        except msgspec.DecodeError as exc:
            raise TransientPartnerError(self.partner, "unreadable answer") from exc
        if answer.errcode == BUSY:
            raise TransientPartnerError(self.partner, "system busy (-1)")
        return answer
