"""WeChat Pay API v3 for one merchant: JSAPI orders, medical-insurance mixed orders, query, close,
refunds; the payer's side is in `pay_phone`.

Every request must carry the merchant's `Authorization` signature over the path it was sent to
(`/wechatpay/v3/...`, or `/v3/...` at the sandbox's root, as a stock SDK signs it); every answer is
signed with the platform key. Orders are keyed by out_trade_no and refunds by out_refund_no, both
deduplicating: the same request again gets the same answer, never a second order or refund.
"""

import base64
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import Provide

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.alipay_openapi import SHANGHAI
from miniprogram_stub.sandbox.faults import (
    FaultBook,
    Garbage,
    Partner,
    answered,
    delay_or_http_failure,
    garbage,
)
from miniprogram_stub.sandbox.notify_delivery import Courier
from miniprogram_stub.sandbox.wechatpay_protocol import (
    WechatNotice,
    answer,
    authorization_problem,
    error,
    now,
    signed_headers,
)

NAME = "wechatpay"
APIS = frozenset({"jsapi", "med-ins", "query", "close", "refund", "refund-query"})
_FAULT_STATUS = {"SYSTEM_ERROR": 500, "FREQUENCY_LIMITED": 429, "SIGN_ERROR": 401, "ORDER_NOT_EXIST": 404}
_OUT_NO = re.compile(r"^[A-Za-z0-9_\-|*@]{1,64}$")
_ORDER_TYPES = frozenset({"REG_PAY", "DIAG_PAY", "PHARMACY_PAY", "IN_HOSP_PAY", "INTERNET_HOSP_PAY"})
_FEES = ("med_ins_gov_fee", "med_ins_self_fee", "med_ins_other_fee", "med_ins_cash_fee")
PAID_STATES = frozenset({"SUCCESS", "REFUND"})


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    amount: int
    request: dict[str, Any]
    create_time: str
    status: str = "PROCESSING"
    success_time: str = ""
    notice: WechatNotice | None = None


@dataclass
class Order:
    out_trade_no: str
    request: dict[str, Any]  # the JSAPI order as first asked
    prepay_id: str
    trade_state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: str = ""
    med_ins: dict[str, Any] | None = None
    relative_name: str | None = None  # whom the payer pays for (pay_for_relatives), decrypted
    mix_trade_no: str = ""
    refunds: dict[str, Refund] = field(default_factory=dict)
    notice: WechatNotice | None = None

    @property
    def total(self) -> int:
        return int(self.request["amount"]["total"])

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.status in ("SUCCESS", "PROCESSING"))

    def expired(self) -> bool:
        expire = self.request.get("time_expire")
        return bool(expire) and datetime.fromisoformat(expire) < datetime.now(SHANGHAI)


@dataclass
class WechatPayState:
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    courier: Courier = field(default_factory=Courier)


def _digits(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(length - len(prefix)))


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError:
        raise Refused(400, "PARAM_ERROR", "body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "PARAM_ERROR", "body is not a JSON object")
    return body


def _need(body: dict[str, Any], name: str, kind: type = str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
        raise Refused(400, "PARAM_ERROR", f"{name}: missing or not a {kind.__name__}")
    return value


def _fee(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refused(400, "PARAM_ERROR", f"{name}: an amount in fen")
    return value


def transaction(order: Order, **overrides: Any) -> dict[str, Any]:
    """The order as the query API and a payment notification describe it."""
    request = order.request
    paid = order.trade_state in PAID_STATES
    amount: dict[str, Any] = {"total": order.total, "currency": "CNY"}
    body: dict[str, Any] = {
        "appid": request["appid"],
        "mchid": request["mchid"],
        "out_trade_no": order.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": order.trade_state,
        "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "未支付", "CLOSED": "已关闭"}.get(
            order.trade_state, order.trade_state
        ),
        "payer": {"openid": request["payer"]["openid"]},
        "amount": amount,
    }
    if paid or order.transaction_id:
        amount |= {"payer_total": order.total, "payer_currency": "CNY"}
        body |= {"transaction_id": order.transaction_id, "bank_type": "OTHERS"}
    if order.success_time:
        body["success_time"] = order.success_time
    if "amount_fen" in overrides:
        amount |= {"total": overrides["amount_fen"], "payer_total": overrides["amount_fen"]}
    if "merchant_id" in overrides:
        body["mchid"] = overrides["merchant_id"]
    if "trade_state" in overrides:
        body["trade_state"] = overrides["trade_state"]
    return body


def refund_view(order: Order, refund: Refund, **overrides: Any) -> dict[str, Any]:
    amount = overrides.get("amount_fen", refund.amount)
    body: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": refund.create_time,
        "status": refund.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": order.total,
            "refund": amount,
            "payer_total": order.total,
            "payer_refund": amount,
            "settlement_total": order.total,
            "settlement_refund": amount,
            "discount_refund": 0,
            "currency": "CNY",
        },
    }
    if refund.success_time:
        body["success_time"] = refund.success_time
    return body


def refund_notification_data(order: Order, refund: Refund, **overrides: Any) -> dict[str, Any]:
    view = refund_view(order, refund, **overrides)
    amount = view["amount"]
    return {
        "mchid": overrides.get("merchant_id", order.request["mchid"]),
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": overrides.get("trade_state", refund.status),
        "success_time": refund.success_time or now(),
        "user_received_account": view["user_received_account"],
        "amount": {k: amount[k] for k in ("total", "refund", "payer_total", "payer_refund")},
    }


def payment_notice(order: Order, **overrides: Any) -> WechatNotice:
    data = transaction(order, **overrides)
    return WechatNotice.build(
        "payment", order.out_trade_no, order.request["notify_url"], "TRANSACTION.SUCCESS", "支付成功", data
    )


def refund_notice(order: Order, refund: Refund, **overrides: Any) -> WechatNotice:
    url = refund.request.get("notify_url") or order.request["notify_url"]
    data = refund_notification_data(order, refund, **overrides)
    event = "REFUND.SUCCESS" if data["refund_status"] == "SUCCESS" else f"REFUND.{data['refund_status']}"
    return WechatNotice.build("refund", order.out_trade_no, url, event, "退款成功", data)


# -- the API ----------------------------------------------------------------------------------


def _jsapi(body: dict[str, Any], state: WechatPayState) -> Response[bytes]:
    if _need(body, "mchid") != config.WECHATPAY_MCHID:
        raise Refused(400, "MCH_NOT_EXISTS", "商户号不存在")
    if _need(body, "appid") != config.WECHAT_APPID:
        raise Refused(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    out_trade_no = _need(body, "out_trade_no")
    if not re.fullmatch(r"[A-Za-z0-9_\-*]{6,32}", out_trade_no):
        raise Refused(400, "PARAM_ERROR", "out_trade_no: 6 to 32 of [A-Za-z0-9_-*]")
    _need(body, "description")
    if not re.match(r"https?://", _need(body, "notify_url")):
        raise Refused(400, "PARAM_ERROR", "notify_url: an absolute http(s) URL")
    amount, payer = _need(body, "amount", dict), _need(body, "payer", dict)
    if _fee(amount, "total") <= 0 or amount.get("currency", "CNY") != "CNY":
        raise Refused(400, "PARAM_ERROR", "amount.total: a positive amount in fen (CNY)")
    _need(payer, "openid")
    if "time_expire" in body:
        try:
            datetime.fromisoformat(_need(body, "time_expire"))
        except ValueError:
            raise Refused(400, "PARAM_ERROR", "time_expire: RFC 3339") from None
    order = state.orders.get(out_trade_no)
    if order is not None:
        if order.trade_state in PAID_STATES:
            raise Refused(400, "ORDERPAID", "该订单已支付")
        if order.trade_state == "CLOSED":
            raise Refused(400, "ORDER_CLOSED", "订单已关闭")
        if order.request != body:
            raise Refused(400, "INVALID_REQUEST", "201 商户订单号重复: out_trade_no already used")
        return answer(200, {"prepay_id": order.prepay_id})
    prepay_id = "wx" + datetime.now(SHANGHAI).strftime("%d%H%M%S") + secrets.token_hex(13)
    state.orders[out_trade_no] = Order(out_trade_no, body, prepay_id)
    return answer(200, {"prepay_id": prepay_id})


def _med_ins(body: dict[str, Any], state: WechatPayState) -> Response[bytes]:
    order = state.orders.get(_need(body, "out_trade_no"))
    if order is None or body.get("prepay_id") != order.prepay_id:
        raise Refused(400, "PARAM_ERROR", "prepay_id: not the JSAPI order of this out_trade_no")
    if (
        _need(body, "appid") != order.request["appid"]
        or body.get("openid") != order.request["payer"]["openid"]
    ):
        raise Refused(400, "PARAM_ERROR", "appid and openid must be those of the JSAPI order")
    if _need(body, "order_type") not in _ORDER_TYPES:
        raise Refused(400, "PARAM_ERROR", "order_type: unknown")
    for name in ("med_inst_no", "med_inst_name", "callback_url"):
        _need(body, name)
    mix_pay_type = _need(body, "mix_pay_type")
    total, cash = _fee(body, "total_fee"), _fee(body, "wechat_pay_cash_fee")
    med_ins_sum = sum(_fee(body, name) for name in _FEES)
    if mix_pay_type == "CASH_ONLY":
        if med_ins_sum != 0 or total != cash:
            raise Refused(400, "PARAM_ERROR", "CASH_ONLY: no insurance fees, total_fee = wechat_pay_cash_fee")
    elif mix_pay_type == "CASH_AND_INSURANCE":
        if med_ins_sum == 0 or total != med_ins_sum or cash != body.get("med_ins_cash_fee"):
            raise Refused(
                400,
                "PARAM_ERROR",
                "total_fee must equal med_ins_gov_fee + med_ins_self_fee + med_ins_other_fee + "
                "med_ins_cash_fee, and wechat_pay_cash_fee equal med_ins_cash_fee",
            )
    else:
        raise Refused(400, "PARAM_ERROR", "mix_pay_type: CASH_ONLY or CASH_AND_INSURANCE here")
    if cash != order.total:
        raise Refused(400, "PARAM_ERROR", "wechat_pay_cash_fee differs from the JSAPI order's amount")
    relative_name = _relative(body)
    if order.med_ins is not None and order.med_ins != body:
        raise Refused(400, "INVALID_REQUEST", "out_trade_no already used by another insurance order")
    if order.med_ins is None:
        order.med_ins, order.mix_trade_no = body, _digits("1217752501", 30)
        order.relative_name = relative_name
    return answer(
        200,
        {
            "mix_trade_no": order.mix_trade_no,
            "mix_pay_status": "MIX_PAY_SUCCESS" if order.trade_state in PAID_STATES else "MIX_PAY_CREATED",
            "self_pay_status": "SELF_PAY_SUCCESS" if order.trade_state in PAID_STATES else "SELF_PAY_CREATED",
            "med_ins_pay_status": "NO_MED_INS_PAY" if mix_pay_type == "CASH_ONLY" else "MED_INS_PAY_CREATED",
            **{k: body[k] for k in ("mix_pay_type", "order_type", "appid", "openid", "out_trade_no")},
            "total_fee": total,
            "wechat_pay_cash_fee": cash,
        },
    )


_CARD_TYPES = frozenset(
    {
        "ID_CARD",
        "HOUSEHOLD_REGISTRATION",
        "FOREIGNER_PASSPORT",
        "FOREIGN_PERMANENT_RESIDENT",
        "MAINLAND_TRAVEL_PERMIT_FOR_TW",
        "MAINLAND_TRAVEL_PERMIT_FOR_HK",
        "MAINLAND_TRAVEL_PERMIT_FOR_MO",
    }
)


def _relative(body: dict[str, Any]) -> str | None:
    """Paying for a relative: the relative named, the name encrypted with our public key."""
    if body.get("pay_for_relatives") is not True:
        if "relative" in body:
            raise Refused(400, "PARAM_ERROR", "relative: only when pay_for_relatives is true")
        return None
    relative = body.get("relative")
    if not isinstance(relative, dict) or relative.get("card_type") not in _CARD_TYPES:
        raise Refused(400, "PARAM_ERROR", "relative: name, id_digest and a known card_type")
    if not re.fullmatch(r"[0-9a-f]{32}", str(relative.get("id_digest", ""))):
        raise Refused(400, "PARAM_ERROR", "relative.id_digest: the MD5 of the document number")
    try:
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
        return (
            config.wechatpay_platform_private_key().decrypt(base64.b64decode(relative["name"]), oaep).decode()
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise Refused(
            400, "PARAM_ERROR", "relative.name: not encrypted with WeChat Pay's public key"
        ) from exc


def _order(out_trade_no: str, state: WechatPayState) -> Order:
    order = state.orders.get(out_trade_no)
    if order is None:
        raise Refused(404, "ORDER_NOT_EXIST", "订单不存在")
    return order


def _query(out_trade_no: str, mchid: str, state: WechatPayState) -> Response[bytes]:
    if mchid != config.WECHATPAY_MCHID:
        raise Refused(400, "PARAM_ERROR", "mchid: not the merchant of the order")
    return answer(200, transaction(_order(out_trade_no, state)))


def _close(out_trade_no: str, body: dict[str, Any], state: WechatPayState) -> Response[bytes]:
    if body.get("mchid") != config.WECHATPAY_MCHID:
        raise Refused(400, "PARAM_ERROR", "mchid: not the merchant of the order")
    order = _order(out_trade_no, state)
    if order.trade_state in PAID_STATES:
        raise Refused(400, "ORDERPAID", "订单已支付")
    order.trade_state = "CLOSED"
    return answer(204)


def _refund(body: dict[str, Any], state: WechatPayState) -> Response[bytes]:
    out_refund_no, out_trade_no = _need(body, "out_refund_no"), _need(body, "out_trade_no")
    if not _OUT_NO.fullmatch(out_refund_no):
        raise Refused(400, "PARAM_ERROR", "out_refund_no: 1 to 64 of [A-Za-z0-9_-|*@]")
    amount = _need(body, "amount", dict)
    refund_fen, total = _fee(amount, "refund"), _fee(amount, "total")
    if refund_fen <= 0 or amount.get("currency", "CNY") != "CNY":
        raise Refused(400, "PARAM_ERROR", "amount.refund: a positive amount in fen (CNY)")
    earlier = state.refunds.get(out_refund_no)
    if earlier is not None:
        if earlier.out_trade_no != out_trade_no or earlier.amount != refund_fen:
            raise Refused(400, "INVALID_REQUEST", "out_refund_no already used with other parameters")
        return answer(200, refund_view(state.orders[out_trade_no], earlier))
    order = state.orders.get(out_trade_no)
    if order is None:
        raise Refused(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    if order.trade_state not in PAID_STATES:
        raise Refused(400, "INVALID_REQUEST", "订单未支付, 不能退款")
    if total != order.total:
        raise Refused(400, "PARAM_ERROR", "amount.total: 与原订单金额不一致")
    if refund_fen > order.total - order.refunded:
        raise Refused(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    refund = Refund(out_refund_no, _digits("50", 29), out_trade_no, refund_fen, body, now())
    order.refunds[out_refund_no] = state.refunds[out_refund_no] = refund
    accepted = refund_view(order, refund)  # answered PROCESSING; the money is back a moment later
    refund.status, refund.success_time, order.trade_state = "SUCCESS", now(), "REFUND"
    refund.notice = refund_notice(order, refund)
    if body.get("notify_url"):
        state.courier.send(refund.notice)
    return answer(200, accepted)


def _refund_query(out_refund_no: str, state: WechatPayState) -> Response[bytes]:
    refund = state.refunds.get(out_refund_no)
    if refund is None:
        raise Refused(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return answer(200, refund_view(state.orders[refund.out_trade_no], refund))


async def _call(
    request: Request[Any, Any, Any],
    book: FaultBook,
    api: str,
    run: Callable[[dict[str, Any]], Response[bytes]],
) -> Response[Any]:
    """One API call: a queued fault first, then the merchant's signature, then `run` on the body."""
    raw = await request.body()
    query = request.url.query
    url = request.url.path + (f"?{query}" if query else "")
    shown = {"url": url, "body": raw.decode("utf-8", errors="replace")[:2000]}
    fault = book.take(NAME, api)
    plain = await delay_or_http_failure(fault)
    if plain is not None:
        book.record(NAME, api, shown, f"http:{plain.status_code}", True)
        return plain
    try:
        if fault is not None and fault.code is not None:
            raise Refused(_FAULT_STATUS.get(fault.code, 400), fault.code, "sandbox fault")
        problem = authorization_problem(request.method, url, request.headers.get("authorization", ""), raw)
        if problem is not None:
            raise Refused(401, "SIGN_ERROR", problem)
        response = run(_object(raw))
        outcome = "ok"
    except Refused as exc:
        response, outcome = error(exc.status, exc.code, exc.message), exc.code
    if fault is not None and fault.body is not None:
        response = _garbled(fault.body, response)
    book.record(NAME, api, shown, answered(fault, outcome), fault is not None)
    return response


def _garbled(kind: Garbage, response: Response[bytes]) -> Response[bytes]:
    """The answer as a `body` fault leaves it: WeChat Pay signs whatever it answers, so garbage
    comes correctly signed; `bad_signature` is the true answer under a signature of other bytes."""
    real = response.content
    content, media_type = garbage(kind, real)
    signed = signed_headers(b"not " + content if kind == "bad_signature" else content)
    return Response(content, status_code=response.status_code, media_type=media_type, headers=signed)


@post("/v3/pay/transactions/jsapi", operation_id="wechatpayJsapi")
async def jsapi(request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState) -> Response[Any]:
    return await _call(request, book, "jsapi", lambda body: _jsapi(body, pay))


@post("/v3/med-ins/orders", operation_id="wechatpayMedInsOrder")
async def med_ins(request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState) -> Response[Any]:
    return await _call(request, book, "med-ins", lambda body: _med_ins(body, pay))


@get("/v3/pay/transactions/out-trade-no/{out_trade_no:str}", operation_id="wechatpayQuery")
async def query(
    request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState, out_trade_no: str
) -> Response[Any]:
    mchid = request.query_params.get("mchid", "")
    return await _call(request, book, "query", lambda _: _query(out_trade_no, mchid, pay))


@post("/v3/pay/transactions/out-trade-no/{out_trade_no:str}/close", operation_id="wechatpayClose")
async def close(
    request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState, out_trade_no: str
) -> Response[Any]:
    return await _call(request, book, "close", lambda body: _close(out_trade_no, body, pay))


@post("/v3/refund/domestic/refunds", operation_id="wechatpayRefund")
async def refund(request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState) -> Response[Any]:
    return await _call(request, book, "refund", lambda body: _refund(body, pay))


@get("/v3/refund/domestic/refunds/{out_refund_no:str}", operation_id="wechatpayRefundQuery")
async def refund_query(
    request: Request[Any, Any, Any], book: FaultBook, pay: WechatPayState, out_refund_no: str
) -> Response[Any]:
    return await _call(request, book, "refund-query", lambda _: _refund_query(out_refund_no, pay))


def provide_pay(state: State) -> WechatPayState:
    pay: WechatPayState = state[NAME]
    return pay


_HANDLERS = [jsapi, med_ins, query, close, refund, refund_query]
_DEPENDENCIES = {"pay": Provide(provide_pay, sync_to_thread=False)}
router = Router("/wechatpay", route_handlers=_HANDLERS, dependencies=_DEPENDENCIES)
# The same API with its real paths, at the sandbox's root: the merchant signs the path, and a stock
# SDK (wechatpayv3) signs `/v3/...` whatever its gateway, so only there do its signatures hold.
root_router = Router("/", route_handlers=_HANDLERS, dependencies=_DEPENDENCIES)

PARTNER = Partner(NAME, APIS, frozenset({"code"}), router, WechatPayState, signs_answers=True)
