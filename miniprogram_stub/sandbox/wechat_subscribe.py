"""WeChat subscribe messages: `cgi-bin/token`, `message/subscribe/send`, and what was delivered."""

import hmac
import math
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.faults import FaultBook
from miniprogram_stub.sandbox.subscribe import Subscriptions, data_problem, templates
from miniprogram_stub.sandbox.wechat_protocol import AccessTokens, answer, error

API_TOKEN = "token"
API_SUBSCRIBE_SEND = "subscribe_send"
_MINIPROGRAM_STATES = frozenset({"developer", "trial", "formal"})
_LANGS = frozenset({"zh_CN", "en_US", "zh_HK", "zh_TW"})
# How much of a send's body the call record keeps per field.
_SHOWN_CHARS = 2_000


class SendRequest(msgspec.Struct):
    """Unknown fields are ignored and missing ones read as empty, as the platform does."""

    touser: str = ""
    template_id: str = ""
    page: str = ""
    data: Any = msgspec.field(default_factory=dict)  # checked against the template, not here
    miniprogram_state: str = "formal"
    lang: str = "zh_CN"


class Message(msgspec.Struct):
    msgid: int
    touser: str
    template_id: str
    page: str
    data: dict[str, Any]
    at: str


def _issue(params: dict[str, str], tokens: AccessTokens) -> dict[str, Any]:
    appid = params.get("appid", "")
    secret = params.get("secret", "")
    if not appid:
        return error(41002)
    if appid != config.WECHAT_APPID:
        return error(40013)
    if not secret:
        return error(41004)
    if not hmac.compare_digest(secret.encode(), config.WECHAT_SECRET.encode()):
        return error(40125)
    if params.get("grant_type") != "client_credential":
        return error(40002)
    return {"access_token": tokens.issue(), "expires_in": math.ceil(tokens.ttl_s)}


def _send(token: str, raw: bytes, tokens: AccessTokens, subscriptions: Subscriptions) -> dict[str, Any]:
    errcode = tokens.errcode(token)
    if errcode:
        return error(errcode)
    try:
        ask = msgspec.json.decode(raw, type=SendRequest)
    except msgspec.DecodeError as exc:
        return error(47001, f"data format error hint: {exc}")
    template = templates("wechat").get(ask.template_id)
    if template is None:
        return error(40037)
    if not subscriptions.has_user(ask.touser):
        return error(40003)
    problem = data_problem(template, ask.data)
    if problem is None and ask.miniprogram_state not in _MINIPROGRAM_STATES:
        problem = f"miniprogram_state must be one of {sorted(_MINIPROGRAM_STATES)}"
    if problem is None and ask.lang not in _LANGS:
        problem = f"lang must be one of {sorted(_LANGS)}"
    if problem is not None:
        return error(47003, f"argument invalid! {problem}")
    if not subscriptions.spend(ask.touser, template.id):
        return error(43101)
    delivered = subscriptions.deliver(ask.touser, template.id, ask.page, ask.data)
    return {"errcode": 0, "errmsg": "ok", "msgid": delivered.msgid}


def _shown(raw: bytes) -> dict[str, str]:
    """The send's body fields as text, for the call record; the raw text if it is not an object."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        return {"body": raw.decode("utf-8", errors="replace")[:_SHOWN_CHARS]}
    return {
        str(k): (v if isinstance(v, str) else msgspec.json.encode(v).decode())[:_SHOWN_CHARS]
        for k, v in body.items()
    }


@get("/cgi-bin/token", operation_id="wechatToken")
async def token(request: Request[Any, Any, Any], book: FaultBook, tokens: AccessTokens) -> Response[Any]:
    params = dict(request.query_params.items())
    return await answer(book, API_TOKEN, params, lambda: _issue(params, tokens))


@post("/cgi-bin/message/subscribe/send", status_code=200, operation_id="wechatSubscribeSend")
async def subscribe_send(
    request: Request[Any, Any, Any], book: FaultBook, tokens: AccessTokens, subscriptions: Subscriptions
) -> Response[Any]:
    raw = await request.body()
    access_token = request.query_params.get("access_token", "")
    params = {**_shown(raw), "access_token": access_token}
    return await answer(
        book, API_SUBSCRIBE_SEND, params, lambda: _send(access_token, raw, tokens, subscriptions)
    )


@get("/_sandbox/messages", operation_id="wechatListMessages")
async def list_messages(
    subscriptions: Subscriptions, touser: str | None = None, template_id: str | None = None
) -> list[Message]:
    return [
        Message(m.msgid, m.user, m.template_id, m.page, m.data, m.at)
        for m in subscriptions.delivered(touser, template_id)
    ]


@delete("/_sandbox/messages", operation_id="wechatClearMessages")
async def clear_messages(subscriptions: Subscriptions) -> None:
    subscriptions.clear_delivered()


HANDLERS = [token, subscribe_send, list_messages, clear_messages]
APIS = frozenset({API_TOKEN, API_SUBSCRIBE_SEND})
