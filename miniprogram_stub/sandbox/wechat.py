"""WeChat mini-program login: `wx.login()` on the phone side, `jscode2session` for the server."""

import base64
import hmac
import secrets
import string
from typing import Annotated, Any, NamedTuple

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ValidationException

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.codes import (
    CodeInvalidError,
    CodeUsedError,
    OneTimeCodes,
    stable_digest,
)
from miniprogram_stub.sandbox.faults import FaultBook, Partner, delay_or_http_failure

NAME = "wechat"
API_JSCODE2SESSION = "jscode2session"

ERRMSG = {
    -1: "system error",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    45011: "api minute-quota reach limit mustslower retry next minute",
}

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


def new_state() -> OneTimeCodes[WxIdentity]:
    return OneTimeCodes(_new_code)


def identity(appid: str, user: str) -> WxIdentity:
    """openid is per (app, user); unionid is per user across the open-platform account."""
    openid = base64.urlsafe_b64encode(stable_digest("openid", appid, user)).decode()
    unionid = base64.urlsafe_b64encode(stable_digest("unionid", user)).decode()
    return WxIdentity("o" + openid[:27], "u" + unionid[:27])


def error(errcode: int) -> dict[str, Any]:
    # The real platform appends a request id; clients must key on errcode, never errmsg.
    rid = "-".join(secrets.token_hex(4) for _ in range(3))
    return {"errcode": errcode, "errmsg": f"{ERRMSG.get(errcode, 'sandbox error')}, rid: {rid}"}


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


def provide_codes(state: State) -> OneTimeCodes[WxIdentity]:
    codes: OneTimeCodes[WxIdentity] = state[NAME]
    return codes


@post("/_sandbox/login", status_code=200, operation_id="wechatPhoneLogin")
async def phone_login(data: PhoneLogin, codes: OneTimeCodes[WxIdentity]) -> PhoneLoginResult:
    if data.appid != config.WECHAT_APPID:
        raise ValidationException(f"appid: not registered with the sandbox ({data.appid})")
    who = identity(data.appid, data.user)
    return PhoneLoginResult(codes.issue(data.appid, who), who.openid, who.unionid)


@get("/sns/jscode2session", operation_id="wechatJscode2session")
async def jscode2session(
    request: Request[Any, Any, Any], book: FaultBook, codes: OneTimeCodes[WxIdentity]
) -> Response[Any]:
    params = dict(request.query_params.items())
    fault = book.take(NAME, API_JSCODE2SESSION)
    plain = await delay_or_http_failure(fault)
    if plain is not None:
        book.record(NAME, API_JSCODE2SESSION, params, f"http:{plain.status_code}", True)
        return plain
    # A faulted call fails before the code is looked at, so the code stays redeemable.
    if fault is not None and fault.errcode is not None:
        body = error(fault.errcode)
    else:
        body = _exchange(params, codes)
    outcome = str(body.get("errcode", "ok"))
    book.record(NAME, API_JSCODE2SESSION, params, outcome, fault is not None)
    return Response(body)


router = Router(
    "/wechat",
    route_handlers=[phone_login, jscode2session],
    dependencies={"codes": Provide(provide_codes, sync_to_thread=False)},
)

PARTNER = Partner(NAME, frozenset({API_JSCODE2SESSION}), frozenset({"errcode"}), router, new_state)
