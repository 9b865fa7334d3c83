"""Alipay subscribe messages: `alipay.open.app.mini.templatemessage.send`, and what was delivered."""

from typing import Any

import msgspec
from litestar import delete, get

from miniprogram_stub.sandbox.alipay_openapi import SUB_MSG, GatewayError
from miniprogram_stub.sandbox.subscribe import Subscriptions, data_problem, templates

API_TEMPLATE_MESSAGE_SEND = "alipay.open.app.mini.templatemessage.send"
BUSINESS_FAILED = "40004"
# Alipay's documented limit on the `data` parameter.
_MAX_DATA_CHARS = 2048


class TemplateMessageSend(msgspec.Struct):
    """`biz_content`; missing fields read as empty and are refused one by one, as Alipay does."""

    to_user_id: str = ""
    user_template_id: str = ""
    page: str = ""
    data: str = ""  # a JSON text itself: {"keyword1": {"value": "..."}, ...}


class Message(msgspec.Struct):
    to_user_id: str
    template_id: str
    page: str
    data: dict[str, Any]
    at: str


def _data_illegal(problem: str) -> GatewayError:
    return GatewayError(BUSINESS_FAILED, "DATA_ILLEGAL", f"{SUB_MSG['DATA_ILLEGAL']}：{problem}")


def send_template_message(params: dict[str, str], subscriptions: Subscriptions) -> dict[str, Any]:
    try:
        ask = msgspec.json.decode(params.get("biz_content", ""), type=TemplateMessageSend)
    except msgspec.DecodeError as exc:
        raise GatewayError("40002", "isv.invalid-parameter", f"biz_content: {exc}") from None
    template = templates("alipay").get(ask.user_template_id)
    if template is None:
        raise GatewayError(BUSINESS_FAILED, "TEMPLATE_NOT_EXIST")
    if not subscriptions.has_user(ask.to_user_id):
        raise GatewayError(BUSINESS_FAILED, "USER_NOT_EXIST")
    if len(ask.data) > _MAX_DATA_CHARS:
        raise _data_illegal(f"data exceeds {_MAX_DATA_CHARS} characters")
    try:
        data = msgspec.json.decode(ask.data)
    except msgspec.DecodeError:
        raise _data_illegal("data is not JSON") from None
    problem = data_problem(template, data)
    if problem is not None:
        raise _data_illegal(problem)
    if not subscriptions.spend(ask.to_user_id, template.id):
        raise GatewayError(BUSINESS_FAILED, "USER_NOT_SUBSCRIBED")
    subscriptions.deliver(ask.to_user_id, template.id, ask.page, data)
    return {"code": "10000", "msg": "Success"}


@get("/_sandbox/messages", operation_id="alipayListMessages")
async def list_messages(
    subscriptions: Subscriptions, to_user_id: str | None = None, template_id: str | None = None
) -> list[Message]:
    return [
        Message(m.user, m.template_id, m.page, m.data, m.at)
        for m in subscriptions.delivered(to_user_id, template_id)
    ]


@delete("/_sandbox/messages", operation_id="alipayClearMessages")
async def clear_messages(subscriptions: Subscriptions) -> None:
    subscriptions.clear_delivered()


HANDLERS = [list_messages, clear_messages]
