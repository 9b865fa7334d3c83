"""WeChat's mini-program server API: login codes, the access token, subscribe messages."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, TypeVar

import httpx
import msgspec
import structlog
from redis.asyncio import Redis

from backend.partners.delivery import NOT_SENT_ERRORS, Delivery
from backend.partners.http import TransientPartnerError, rejected, with_retries
from backend.platform.errors import PartnerUnavailable, Unauthorized
from backend.settings import PartnerHttpSettings, WechatSettings

log = structlog.get_logger(__name__)
A = TypeVar("A", "_Answer", "_TokenAnswer")

BUSY = -1
INVALID_CODE = 40029
CODE_USED = 40163
RATE_LIMITED = 45011
TOKEN_INVALID = 40001
TOKEN_EXPIRED = 42001
USER_REFUSED = 43101
TOKEN_EARLY_REFRESH_SECONDS = 300
TOKEN_LOCK_SECONDS = 30  # longer than a fetch with its retries can take
# Deletes a key only if it still holds the value given: the failed token (another worker may
# have refreshed it already), or our own lock (it may have expired and been taken).
_FORGET_TOKEN = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RELEASE_LOCK = _FORGET_TOKEN


class WechatSession(msgspec.Struct, frozen=True):
    openid: str
    unionid: str | None = None
    # session_key decrypts the user's encrypted data; we need none of it, so it is never kept.


class _Answer(msgspec.Struct):
    openid: str | None = None
    unionid: str | None = None
    errcode: int = 0
    errmsg: str = ""


class _TokenAnswer(msgspec.Struct):
    access_token: str = ""
    expires_in: int = 0
    errcode: int = 0
    errmsg: str = ""


class _SendAnswer(msgspec.Struct):
    # Required: an answer without it is not the platform's (a proxy's JSON), not a delivery.
    errcode: int
    errmsg: str = ""
    msgid: int | None = None


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
            raise rejected(self.partner, "WeChat refused the login", platform_code=answer.errcode)
        return WechatSession(openid=answer.openid, unionid=answer.unionid)

    async def _call(self, code: str) -> _Answer:
        params = {
            "appid": self.settings.appid,
            "secret": self.settings.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        return await self._get("/sns/jscode2session", params, _Answer)

    async def _get(self, path: str, params: dict[str, str], answer_type: type[A]) -> A:
        """One GET of the server API; what a retry may fix (5xx, garbage, -1 busy) is transient."""
        response = await self.http.get(f"{self.settings.api_base}{path}", params=params)
        if response.status_code >= 500:
            raise TransientPartnerError(self.partner, f"HTTP {response.status_code}")
        try:
            answer = msgspec.json.decode(response.content, type=answer_type)
        except msgspec.DecodeError as exc:
            raise TransientPartnerError(self.partner, "unreadable answer") from exc
        if answer.errcode == BUSY:
            raise TransientPartnerError(self.partner, "system busy (-1)")
        return answer

    # -- the server API's access token ------------------------------------------------------

    @property
    def _token_key(self) -> str:
        return f"wechat:access_token:{self.settings.appid}"

    async def access_token(self, redis: Redis) -> str:
        """The app's access token: cached in Redis until shortly before it expires, and fetched
        by one process at a time (the platform retires the old token on every fetch)."""
        lock, holder = f"{self._token_key}:lock", secrets.token_hex(8)
        deadline = asyncio.get_running_loop().time() + TOKEN_LOCK_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            if cached := await self._cached_token(redis):
                return cached
            if await redis.get(f"{self._token_key}:refused"):
                break
            if await redis.set(lock, holder, nx=True, ex=TOKEN_LOCK_SECONDS):
                try:
                    # Whoever held the lock before us may have stored a token just now.
                    return await self._cached_token(redis) or await self._fetch_token(redis)
                finally:
                    await redis.eval(_RELEASE_LOCK, 1, lock, holder)  # type: ignore[misc]
            await asyncio.sleep(0.05)
        raise PartnerUnavailable("WeChat's access token could not be had", detail={"partner": "wechat"})

    async def _cached_token(self, redis: Redis) -> str | None:
        cached = await redis.get(self._token_key)
        if cached is None:
            return None
        return cached.decode() if isinstance(cached, bytes) else str(cached)

    async def _fetch_token(self, redis: Redis) -> str:
        params = {
            "grant_type": "client_credential",
            "appid": self.settings.appid,
            "secret": self.settings.secret,
        }
        answer = await with_retries(
            self.http_settings, self.partner, lambda: self._get("/cgi-bin/token", params, _TokenAnswer)
        )
        if answer.errcode or not answer.access_token:
            # Do not hammer the platform (each fetch counts against a daily quota) while our
            # credentials are refused: everyone waits a minute.
            await redis.set(f"{self._token_key}:refused", str(answer.errcode), ex=60)
            log.error("wechat refused an access token", errcode=answer.errcode)
            raise rejected(
                self.partner, "WeChat refused our access-token request", platform_code=answer.errcode
            )
        ttl = max(answer.expires_in - TOKEN_EARLY_REFRESH_SECONDS, answer.expires_in // 2, 1)
        await redis.set(self._token_key, answer.access_token, ex=ttl)
        log.info("wechat access token refreshed", expires_in=answer.expires_in)
        return answer.access_token

    # -- subscribe messages -------------------------------------------------------------------

    async def send_subscribe_message(
        self, redis: Redis, openid: str, template_id: str, page: str, data: dict[str, Any]
    ) -> Delivery:
        """One delivery attempt (a stale token is replaced and the send repeated once)."""
        body = {
            "touser": openid,
            "template_id": template_id,
            "page": page,
            "data": data,
            "miniprogram_state": "formal",
            "lang": "zh_CN",
        }
        for _ in range(2):
            try:
                token = await self.access_token(redis)
            except Exception as exc:
                return Delivery("retry", getattr(exc, "code", type(exc).__name__))
            try:
                response = await self.http.post(
                    f"{self.settings.api_base}/cgi-bin/message/subscribe/send",
                    params={"access_token": token},
                    content=msgspec.json.encode(body),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.TransportError as exc:
                name = type(exc).__name__
                return Delivery("retry" if name in NOT_SENT_ERRORS else "in_doubt", name)
            if response.status_code in (502, 504):  # a gateway's: the platform may have acted
                return Delivery("in_doubt", f"HTTP {response.status_code}")
            if response.status_code >= 500:  # the platform's own: it did not take the message
                return Delivery("retry", f"HTTP {response.status_code}")
            try:
                answer = msgspec.json.decode(response.content, type=_SendAnswer)
            except msgspec.DecodeError:
                return Delivery("in_doubt", f"HTTP {response.status_code}, unreadable")
            if answer.errcode in (TOKEN_INVALID, TOKEN_EXPIRED):
                await redis.eval(_FORGET_TOKEN, 1, self._token_key, token)  # type: ignore[misc]
                continue
            if answer.errcode == 0:
                return Delivery("delivered", platform_msg_id=str(answer.msgid))
            if answer.errcode == BUSY:
                return Delivery("retry", str(answer.errcode))
            if answer.errcode == USER_REFUSED:
                return Delivery("refused", str(answer.errcode))
            return Delivery("rejected", f"{answer.errcode} {answer.errmsg}"[:200])
        return Delivery("retry", "access token refused twice")
