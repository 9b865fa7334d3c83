"""The payer's phone and the tester's hands on the payment sandboxes; no real channel has these.

- `POST /_sandbox/pay/{wechat|alipay}/confirm`: the payer pays (or fails to); the channel builds its
  signed notification and, with `deliver`, posts it to the order's notify_url in the background
  until acknowledged. The answer shows the notification, to be posted again at will.
- `POST /_sandbox/pay/{channel}/notification`: a correctly signed notification of an existing
  order with fields changed (amount, merchant, state); nothing changes, nothing is sent.
- `GET /_sandbox/pay/{channel}/orders/{out_trade_no}`: the channel's view of an order.
- `GET /_sandbox/pay/{channel}/refunds/{out_refund_no}/notification`: a refund's notification.
"""

import dataclasses
import secrets
from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar import Router, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from miniprogram_stub.sandbox import alipay_trade, wechatpay
from miniprogram_stub.sandbox.alipay_openapi import SHANGHAI, TIME_FORMAT
from miniprogram_stub.sandbox.notify_delivery import Notice
from miniprogram_stub.sandbox.wechatpay_protocol import now


class Confirm(msgspec.Struct, forbid_unknown_fields=True):
    out_trade_no: str
    outcome: Literal["success", "fail"] = "success"
    deliver: bool = True


class Overrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    amount_fen: int | None = None
    merchant_id: str | None = None
    trade_state: str | None = None


class Forge(msgspec.Struct, forbid_unknown_fields=True):
    out_trade_no: str
    kind: Literal["payment", "refund"] = "payment"
    out_refund_no: str | None = None
    overrides: Overrides = msgspec.field(default_factory=Overrides)


def _conflict(message: str) -> HTTPException:
    return HTTPException(status_code=409, detail=message)


def _wechat(state: State) -> wechatpay.WechatPayState:
    pay: wechatpay.WechatPayState = state[wechatpay.NAME]
    return pay


def _trades(state: State) -> alipay_trade.Trades:
    trades: alipay_trade.Trades = state["alipay"].trades
    return trades


def _wechat_order(state: State, out_trade_no: str) -> wechatpay.Order:
    order = _wechat(state).orders.get(out_trade_no)
    if order is None:
        raise NotFoundException(f"no WeChat Pay order {out_trade_no}")
    return order


def _alipay_trade(state: State, out_trade_no: str) -> alipay_trade.Trade:
    trade = _trades(state).by_out_trade_no.get(out_trade_no)
    if trade is None:
        raise NotFoundException(f"no Alipay trade {out_trade_no}")
    return trade


def _answer(out_trade_no: str, state: str, notice: Notice | None) -> dict[str, Any]:
    return {"out_trade_no": out_trade_no, "state": state, "notification": notice and notice.rendered()}


# -- WeChat Pay -------------------------------------------------------------------------------


def _as_paid(order: wechatpay.Order) -> wechatpay.Order:
    if order.trade_state in wechatpay.PAID_STATES:
        return order
    transaction_id = order.transaction_id or "4200" + f"{secrets.randbelow(10**24):024d}"
    return dataclasses.replace(
        order, trade_state="SUCCESS", transaction_id=transaction_id, success_time=now()
    )


@post("/wechat/confirm", status_code=200, operation_id="payPhoneWechatConfirm")
async def wechat_confirm(data: Confirm, state: State) -> dict[str, Any]:
    """What `wx.requestMedicalInsurancePay` does once the payer enters the password (or fails).

    WeChat Pay notifies successful payments only; a failed one is seen by querying the order."""
    order = _wechat_order(state, data.out_trade_no)
    if order.trade_state == "CLOSED":
        raise _conflict("the order is closed")
    if order.trade_state in ("NOTPAY", "PAYERROR"):
        if order.expired():
            raise _conflict("the order has expired (time_expire)")
        if data.outcome == "fail":
            order.trade_state = "PAYERROR"
            return _answer(order.out_trade_no, order.trade_state, None)
        paid = _as_paid(order)
        order.trade_state, order.transaction_id = "SUCCESS", paid.transaction_id
        order.success_time = paid.success_time
        order.notice = wechatpay.payment_notice(order)
    elif data.outcome == "fail":
        raise _conflict("the order is paid already")
    if data.deliver and order.notice is not None:
        _wechat(state).courier.send(order.notice)
    return _answer(order.out_trade_no, order.trade_state, order.notice)


def _wechat_forge(state: State, data: Forge) -> Notice:
    order = _wechat_order(state, data.out_trade_no)
    overrides = msgspec.structs.asdict(data.overrides)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if data.kind == "payment":
        return wechatpay.payment_notice(_as_paid(order), **overrides)
    refund = order.refunds.get(data.out_refund_no or "")
    if refund is None:
        raise NotFoundException(f"no refund {data.out_refund_no} of {data.out_trade_no}")
    return wechatpay.refund_notice(order, refund, **overrides)


def _wechat_view(state: State, out_trade_no: str) -> dict[str, Any]:
    order = _wechat_order(state, out_trade_no)
    return {
        "out_trade_no": order.out_trade_no,
        "state": order.trade_state,
        "amount_fen": order.total,
        "refunded_fen": order.refunded,
        "transaction_id": order.transaction_id or None,
        "prepay_id": order.prepay_id,
        "mix_trade_no": order.mix_trade_no or None,
        "med_ins": order.med_ins,
        "relative_name": order.relative_name,
        "refunds": [
            {
                "out_refund_no": r.out_refund_no,
                "refund_id": r.refund_id,
                "amount_fen": r.amount,
                "status": r.status,
            }
            for r in order.refunds.values()
        ],
        "deliveries": _wechat(state).courier.of(out_trade_no),
    }


# -- Alipay -----------------------------------------------------------------------------------


def _trade_as_paid(trade: alipay_trade.Trade) -> alipay_trade.Trade:
    if trade.gmt_payment:
        return trade
    paid_at = datetime.now(SHANGHAI).strftime(TIME_FORMAT)
    return dataclasses.replace(trade, trade_status="TRADE_SUCCESS", gmt_payment=paid_at)


@post("/alipay/confirm", status_code=200, operation_id="payPhoneAlipayConfirm")
async def alipay_confirm(data: Confirm, state: State) -> dict[str, Any]:
    """What `my.tradePay` does once the payer pays; a failed payment closes the trade (notified)."""
    trade = _alipay_trade(state, data.out_trade_no)
    if trade.trade_status == "WAIT_BUYER_PAY":
        if trade.expired():
            raise _conflict("the trade has expired (time_expire)")
        if data.outcome == "success":
            trade.trade_status, trade.gmt_payment = "TRADE_SUCCESS", _trade_as_paid(trade).gmt_payment
        else:
            trade.trade_status, trade.gmt_close = "TRADE_CLOSED", datetime.now(SHANGHAI).strftime(TIME_FORMAT)
        trade.notice = alipay_trade.notice(trade)
    elif trade.notice is None or (data.outcome == "success") != bool(trade.gmt_payment):
        raise _conflict(f"the trade is {trade.trade_status} already")  # the same confirm again passes
    if data.deliver and trade.notice.url:
        _trades(state).courier.send(trade.notice)
    return _answer(trade.out_trade_no, trade.trade_status, trade.notice)


def _alipay_forge(state: State, data: Forge) -> Notice:
    trade = _alipay_trade(state, data.out_trade_no)
    overrides = {k: v for k, v in msgspec.structs.asdict(data.overrides).items() if v is not None}
    if data.kind == "payment":
        return alipay_trade.notice(_trade_as_paid(trade), **overrides)
    refund = trade.refunds.get(data.out_refund_no or "")
    if refund is None:
        raise NotFoundException(f"no refund {data.out_refund_no} of {data.out_trade_no}")
    return alipay_trade.notice(trade, refund, **overrides)


def _alipay_view(state: State, out_trade_no: str) -> dict[str, Any]:
    trade = _alipay_trade(state, out_trade_no)
    return {
        "out_trade_no": trade.out_trade_no,
        "state": trade.trade_status,
        "trade_no": trade.trade_no,
        "amount_fen": trade.total,
        "refunded_fen": trade.refunded,
        "refunds": [
            {"out_refund_no": r.out_request_no, "amount_fen": r.amount} for r in trade.refunds.values()
        ],
        "deliveries": _trades(state).courier.of(out_trade_no),
    }


# -- both -------------------------------------------------------------------------------------


def _channel(channel: str) -> Literal["wechat", "alipay"]:
    if channel not in ("wechat", "alipay"):
        raise ValidationException("channel: wechat or alipay")
    return "wechat" if channel == "wechat" else "alipay"


@post("/{channel:str}/notification", status_code=200, operation_id="payPhoneForgeNotification")
async def forge_notification(channel: str, data: Forge, state: State) -> dict[str, Any]:
    forge = _wechat_forge if _channel(channel) == "wechat" else _alipay_forge
    return forge(state, data).rendered()


@get("/{channel:str}/orders/{out_trade_no:str}", operation_id="payPhoneOrder")
async def order_view(channel: str, out_trade_no: str, state: State) -> dict[str, Any]:
    view = _wechat_view if _channel(channel) == "wechat" else _alipay_view
    return view(state, out_trade_no)


@get("/{channel:str}/refunds/{out_refund_no:str}/notification", operation_id="payPhoneRefundNotification")
async def refund_notification(channel: str, out_refund_no: str, state: State) -> dict[str, Any]:
    notice: Notice | None = None
    if _channel(channel) == "wechat":
        refund = _wechat(state).refunds.get(out_refund_no)
        notice = refund and refund.notice
    else:
        found = _trades(state).refund(out_refund_no)
        notice = found and found[1].notice
    if notice is None:
        raise NotFoundException(f"no refund notification for {out_refund_no}")
    return notice.rendered()


router = Router(
    "/_sandbox/pay",
    route_handlers=[wechat_confirm, alipay_confirm, forge_notification, order_view, refund_notification],
)
