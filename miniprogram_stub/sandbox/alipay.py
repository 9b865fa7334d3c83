"""Alipay mini-program: the phone side (`my.getAuthCode()`, `my.requestSubscribeMessage()`) and
the OpenAPI gateway (login here; subscribe messages in `alipay_subscribe`, trades in `alipay_trade`)."""

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import parse_qsl

import msgspec
from litestar import HttpMethod, Request, Response, Router, post, route
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ValidationException

from miniprogram_stub.sandbox import alipay_subscribe, alipay_trade, config
from miniprogram_stub.sandbox.alipay_openapi import (
    JSON_UTF8,
    SHANGHAI,
    SUB_MSG,
    TIME_FORMAT,
    GatewayError,
    sign_content,
    signed_envelope,
    verify,
)
from miniprogram_stub.sandbox.codes import (
    CodeInvalidError,
    CodeUsedError,
    OneTimeCodes,
    stable_digest,
)
from miniprogram_stub.sandbox.faults import FaultBook, Partner, answered, delay_or_http_failure, garbled
from miniprogram_stub.sandbox.subscribe import Subscriptions, templates

NAME = "alipay"
API_OAUTH_TOKEN = "alipay.system.oauth.token"
# Alipay's own split: an absent common param is 40001, a wrong one 40002.
_REQUIRED = (
    ("app_id", "isv.missing-app-id"),
    ("method", "isv.missing-method"),
    ("sign_type", "isv.missing-signature-type"),
    ("sign", "isv.missing-signature"),
    ("timestamp", "isv.missing-timestamp"),
    ("version", "isv.missing-version"),
)


class AlipayIdentity(NamedTuple):
    user_id: str
    open_id: str


class PhoneLogin(msgspec.Struct, forbid_unknown_fields=True):
    app_id: str
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class PhoneLoginResult(msgspec.Struct):
    auth_code: str
    user_id: str
    open_id: str


class PhoneSubscribe(msgspec.Struct, forbid_unknown_fields=True):
    app_id: str
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # Alipay shows at most 3 templates in one dialog.
    decisions: Annotated[
        dict[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], Literal["accept", "reject"]],
        msgspec.Meta(min_length=1, max_length=3),
    ]


@dataclass
class AlipayState:
    codes: OneTimeCodes[AlipayIdentity] = field(
        default_factory=lambda: OneTimeCodes(lambda: secrets.token_hex(16))
    )
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    trades: alipay_trade.Trades = field(default_factory=alipay_trade.Trades)


def identity(app_id: str, user: str) -> AlipayIdentity:
    """user_id is the Alipay account (same in every app); open_id is per (app, user)."""
    user_id = "2088" + f"{int.from_bytes(stable_digest('user_id', user)[:8]) % 10**12:012d}"
    open_id = base64.urlsafe_b64encode(stable_digest("open_id", app_id, user)).decode()
    return AlipayIdentity(user_id, "0" + open_id[:43])


def _check_common(params: dict[str, str]) -> None:
    for name, sub_code in _REQUIRED:
        if not params.get(name):
            raise GatewayError("40001", sub_code)
    if params["app_id"] != config.ALIPAY_APP_ID:
        raise GatewayError("40002", "isv.invalid-app-id")
    if params["method"] not in _METHODS:
        raise GatewayError("40002", "isv.invalid-method")
    if params.get("format", "JSON").upper() != "JSON":
        raise GatewayError("40002", "isv.invalid-format")
    if params.get("charset", "utf-8").lower() != "utf-8":
        raise GatewayError("40002", "isv.invalid-charset")
    if params["sign_type"] != "RSA2":
        raise GatewayError("40002", "isv.invalid-signature-type")
    try:
        sent_at = datetime.strptime(params["timestamp"], TIME_FORMAT).replace(tzinfo=SHANGHAI)
    except ValueError:
        raise GatewayError("40002", "isv.invalid-timestamp") from None
    skew = abs((datetime.now(SHANGHAI) - sent_at).total_seconds())
    if skew > config.ALIPAY_TIMESTAMP_WINDOW_S:
        raise GatewayError("40002", "isv.invalid-timestamp")
    content = sign_content(params)
    if not verify(content, params["sign"], config.alipay_app_public_key()):
        # Like Alipay, show the string the gateway verified: the fastest clue for the caller.
        detail = f"{SUB_MSG['isv.invalid-signature']}，网关生成的验签字符串为：{content}"
        raise GatewayError("40002", "isv.invalid-signature", detail)


def _oauth_token(params: dict[str, str], platform: AlipayState) -> dict[str, Any]:
    if params.get("grant_type") != "authorization_code":
        raise GatewayError("40002", "isv.grant-type-invalid")
    try:
        who = platform.codes.redeem(params.get("code", ""), owner=params["app_id"])
    except (CodeInvalidError, CodeUsedError):
        raise GatewayError("40002", "isv.code-invalid") from None
    return {
        "user_id": who.user_id,
        "open_id": who.open_id,
        "access_token": "authusrB" + secrets.token_hex(16),
        "expires_in": 1296000,
        "refresh_token": "authusrB" + secrets.token_hex(16),
        "re_expires_in": 2592000,
        "auth_start": datetime.now(SHANGHAI).strftime(TIME_FORMAT),
    }


def _template_message_send(params: dict[str, str], platform: AlipayState) -> dict[str, Any]:
    return alipay_subscribe.send_template_message(params, platform.subscriptions)


_Method = Callable[[dict[str, str], AlipayState], dict[str, Any]]


def _trade_method(run: Callable[[dict[str, str], alipay_trade.Trades], dict[str, Any]]) -> _Method:
    return lambda params, platform: run(params, platform.trades)


_METHODS: dict[str, _Method] = {
    API_OAUTH_TOKEN: _oauth_token,
    alipay_subscribe.API_TEMPLATE_MESSAGE_SEND: _template_message_send,
    **{name: _trade_method(run) for name, run in alipay_trade.METHODS.items()},
}


async def _gateway_params(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Query string and form body merged; on a clash the body wins."""
    params = dict(parse_qsl(request.url.query, keep_blank_values=True))
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", errors="replace")
        params |= dict(parse_qsl(body, keep_blank_values=True))
    return params


def provide_platform(state: State) -> AlipayState:
    platform: AlipayState = state[NAME]
    return platform


def provide_subscriptions(platform: AlipayState) -> Subscriptions:
    return platform.subscriptions


@post("/_sandbox/login", status_code=200, operation_id="alipayPhoneLogin")
async def phone_login(data: PhoneLogin, platform: AlipayState) -> PhoneLoginResult:
    if data.app_id != config.ALIPAY_APP_ID:
        raise ValidationException(f"app_id: not registered with the sandbox ({data.app_id})")
    who = identity(data.app_id, data.user)
    # From now on the user_id is a user of this app: template messages may be sent to it.
    platform.subscriptions.add_user(who.user_id)
    return PhoneLoginResult(platform.codes.issue(data.app_id, who), who.user_id, who.open_id)


@post("/_sandbox/subscribe", status_code=200, operation_id="alipayPhoneSubscribe")
async def phone_subscribe(data: PhoneSubscribe, platform: AlipayState) -> dict[str, str]:
    """What `my.requestSubscribeMessage()` tells the mini-program once the user has chosen."""
    if data.app_id != config.ALIPAY_APP_ID:
        raise ValidationException(f"app_id: not registered with the sandbox ({data.app_id})")
    user_id = identity(data.app_id, data.user).user_id
    return platform.subscriptions.decide(user_id, data.decisions, templates("alipay"))


# As Alipay's: the signed params in the query string (what python-alipay-sdk sends, by GET), in a
# form body, or both.
@route(
    "/gateway.do",
    http_method=[HttpMethod.GET, HttpMethod.POST],
    status_code=200,
    operation_id="alipayGateway",
)
async def gateway(request: Request[Any, Any, Any], book: FaultBook, platform: AlipayState) -> Response[Any]:
    params = await _gateway_params(request)
    method = params.get("method", "")
    fault = book.take(NAME, method)
    plain = await delay_or_http_failure(fault)
    if plain is not None:
        book.record(NAME, method, params, f"http:{plain.status_code}", True)
        return plain
    try:
        # A faulted call fails before anything is looked at: no code or grant is spent.
        if fault is not None and fault.code is not None:
            raise GatewayError(fault.code, fault.sub_code)
        _check_common(params)
        result = _METHODS[method](params, platform)
        body = signed_envelope(method.replace(".", "_") + "_response", result)
        outcome = "ok"
    except GatewayError as exc:
        business = exc.code == alipay_subscribe.BUSINESS_FAILED and method in _METHODS
        key = method.replace(".", "_") + "_response" if business else "error_response"
        body = signed_envelope(key, exc.payload())
        outcome = exc.sub_code or exc.code
    book.record(NAME, method, params, answered(fault, outcome), fault is not None)
    return garbled(fault, Response(body, media_type=JSON_UTF8), body)


router = Router(
    "/alipay",
    route_handlers=[phone_login, phone_subscribe, gateway, *alipay_subscribe.HANDLERS],
    dependencies={
        "platform": Provide(provide_platform, sync_to_thread=False),
        "subscriptions": Provide(provide_subscriptions, sync_to_thread=False),
    },
)

PARTNER = Partner(NAME, frozenset(_METHODS), frozenset({"code", "sub_code"}), router, AlipayState)
