"""WeChat mini-program: the phone side (`wx.login()`, `wx.requestSubscribeMessage()`) and the server APIs.

Login is `sns/jscode2session` here; subscribe messages are in `wechat_subscribe`.
"""

import base64
import hmac
import secrets
import string
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ValidationException

from miniprogram_stub.sandbox import config, wechat_subscribe
from miniprogram_stub.sandbox.codes import (
    CodeInvalidError,
    CodeUsedError,
    OneTimeCodes,
    stable_digest,
)
from miniprogram_stub.sandbox.faults import FaultBook, Partner
from miniprogram_stub.sandbox.subscribe import Decision, Subscriptions, templates
from miniprogram_stub.sandbox.wechat_protocol import NAME, AccessTokens, answer, error

API_JSCODE2SESSION = "jscode2session"
TemplateId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]

_CODE_ALPHABET = string.ascii_letters + string.digits


class WxIdentity(NamedTuple):
    openid: str
    unionid: str


class PhoneLogin(msgspec.Struct, forbid_unknown_fields=True):
    appid: str
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class PhoneLoginResult(msgspec.Struct):
    code: str
    openid: str
    unionid: str


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(32))


@dataclass
class WechatState:
    codes: OneTimeCodes[WxIdentity] = field(default_factory=lambda: OneTimeCodes(_new_code))
    tokens: AccessTokens = field(
        default_factory=lambda: AccessTokens(config.WECHAT_TOKEN_TTL_S, config.WECHAT_TOKEN_OVERLAP_S)
    )
    subscriptions: Subscriptions = field(default_factory=Subscriptions)


def identity(appid: str, user: str) -> WxIdentity:
    """openid is per (app, user); unionid is per user across the open-platform account."""
    openid = base64.urlsafe_b64encode(stable_digest("openid", appid, user)).decode()
    unionid = base64.urlsafe_b64encode(stable_digest("unionid", user)).decode()
    return WxIdentity("o" + openid[:27], "u" + unionid[:27])


def _exchange(params: dict[str, str], codes: OneTimeCodes[WxIdentity]) -> dict[str, Any]:
    appid = params.get("appid", "")
    secret = params.get("secret", "")
    js_code = params.get("js_code", "")
    if not appid:
        return error(41002)
    if appid != config.WECHAT_APPID:
        return error(40013)
    if not secret:
        return error(41004)
    if not hmac.compare_digest(secret.encode(), config.WECHAT_SECRET.encode()):
        return error(40125)
    if params.get("grant_type") != "authorization_code":
        return error(40002)
    if not js_code:
        return error(41008)
    try:
        who = codes.redeem(js_code, owner=appid)
    except CodeUsedError:
        return error(40163)
    except CodeInvalidError:
        return error(40029)
    session_key = base64.b64encode(secrets.token_bytes(16)).decode()
    return {"session_key": session_key, "openid": who.openid, "unionid": who.unionid}


class PhoneSubscribe(msgspec.Struct, forbid_unknown_fields=True):
    appid: str
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # WeChat shows at most 3 templates in one dialog.
    decisions: Annotated[dict[TemplateId, Decision], msgspec.Meta(min_length=1, max_length=3)]


def provide_platform(state: State) -> WechatState:
    platform: WechatState = state[NAME]
    return platform


def provide_tokens(platform: WechatState) -> AccessTokens:
    return platform.tokens


def provide_subscriptions(platform: WechatState) -> Subscriptions:
    return platform.subscriptions


@post("/_sandbox/login", status_code=200, operation_id="wechatPhoneLogin")
async def phone_login(data: PhoneLogin, platform: WechatState) -> PhoneLoginResult:
    if data.appid != config.WECHAT_APPID:
        raise ValidationException(f"appid: not registered with the sandbox ({data.appid})")
    who = identity(data.appid, data.user)
    # From now on the openid is a user of this app: subscribe messages may be sent to it.
    platform.subscriptions.add_user(who.openid)
    return PhoneLoginResult(platform.codes.issue(data.appid, who), who.openid, who.unionid)


@post("/_sandbox/subscribe", status_code=200, operation_id="wechatPhoneSubscribe")
async def phone_subscribe(data: PhoneSubscribe, platform: WechatState) -> dict[str, str]:
    """What `wx.requestSubscribeMessage()` hands the mini-program once the user has chosen."""
    if data.appid != config.WECHAT_APPID:
        raise ValidationException(f"appid: not registered with the sandbox ({data.appid})")
    openid = identity(data.appid, data.user).openid
    answers = platform.subscriptions.decide(openid, data.decisions, templates("wechat"))
    return {"errMsg": "requestSubscribeMessage:ok", **answers}


@get("/sns/jscode2session", operation_id="wechatJscode2session")
async def jscode2session(
    request: Request[Any, Any, Any], book: FaultBook, platform: WechatState
) -> Response[Any]:
    params = dict(request.query_params.items())
    return await answer(book, API_JSCODE2SESSION, params, lambda: _exchange(params, platform.codes))


router = Router(
    "/wechat",
    route_handlers=[phone_login, phone_subscribe, jscode2session, *wechat_subscribe.HANDLERS],
    dependencies={
        "platform": Provide(provide_platform, sync_to_thread=False),
        "tokens": Provide(provide_tokens, sync_to_thread=False),
        "subscriptions": Provide(provide_subscriptions, sync_to_thread=False),
    },
)

PARTNER = Partner(
    NAME,
    frozenset({API_JSCODE2SESSION, *wechat_subscribe.APIS}),
    frozenset({"errcode"}),
    router,
    WechatState,
)
