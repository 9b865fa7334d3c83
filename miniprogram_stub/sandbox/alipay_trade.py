"""Alipay trades for the mini-program: `alipay.trade.create`, `.query`, `.close`, `.refund`,
`.fastpay.refund.query`, and the asynchronous notifications (`trade_status_sync`).

Amounts are yuan strings ("12.34") on the wire and fen here. A trade is keyed by out_trade_no and
a refund by (trade, out_request_no): the same request again never makes a second trade or refund.
"""

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import msgspec

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.alipay_openapi import SHANGHAI, TIME_FORMAT, GatewayError, platform_sign
from miniprogram_stub.sandbox.notify_delivery import Courier

API_CREATE = "alipay.trade.create"
API_QUERY = "alipay.trade.query"
API_CLOSE = "alipay.trade.close"
API_REFUND = "alipay.trade.refund"
API_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
BUSINESS_FAILED = "40004"
_YUAN = re.compile(r"(0|[1-9][0-9]{0,9})(?:\.([0-9]{1,2}))?")
_MAX_FEN = 100_000_000_00  # Alipay's limit: 100,000,000 yuan
_MESSAGES = {
    "ACQ.TRADE_NOT_EXIST": "交易不存在",
    "ACQ.TRADE_STATUS_ERROR": "交易状态不合法",
    "ACQ.CONTEXT_INCONSISTENT": "交易信息被篡改",
    "ACQ.TRADE_HAS_SUCCESS": "交易已被支付",
    "ACQ.TRADE_HAS_CLOSE": "交易已经关闭",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "退款金额超限",
    "ACQ.INVALID_PARAMETER": "参数无效",
}
PAID = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})


def refused(sub_code: str, detail: str | None = None) -> GatewayError:
    return GatewayError(BUSINESS_FAILED, sub_code, detail or _MESSAGES[sub_code])


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(text: Any, name: str) -> int:
    match = _YUAN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise refused("ACQ.INVALID_PARAMETER", f"{name}: an amount in yuan, e.g. 12.34")
    value = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    if not 0 < value <= _MAX_FEN:
        raise refused("ACQ.INVALID_PARAMETER", f"{name}: from 0.01 to 100000000")
    return value


def _now() -> str:
    return datetime.now(SHANGHAI).strftime(TIME_FORMAT)


@dataclass
class TradeRefund:
    out_request_no: str
    amount: int
    gmt_refund: str
    notice: "AlipayNotice | None" = None


@dataclass
class Trade:
    out_trade_no: str
    trade_no: str
    total: int
    biz: dict[str, Any]
    notify_url: str
    gmt_create: str
    trade_status: str = "WAIT_BUYER_PAY"
    gmt_payment: str = ""
    gmt_close: str = ""
    refunds: dict[str, TradeRefund] = field(default_factory=dict)
    notice: "AlipayNotice | None" = None

    @property
    def buyer_id(self) -> str:
        return str(self.biz.get("buyer_id") or "2088" + "0" * 12)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds.values())

    def expired(self) -> bool:
        expire = self.biz.get("time_expire")
        return bool(expire) and datetime.strptime(expire, TIME_FORMAT).replace(
            tzinfo=SHANGHAI
        ) < datetime.now(SHANGHAI)


@dataclass
class Trades:
    by_out_trade_no: dict[str, Trade] = field(default_factory=dict)
    courier: Courier = field(default_factory=Courier)

    def refund(self, out_request_no: str) -> tuple[Trade, TradeRefund] | None:
        for trade in self.by_out_trade_no.values():
            if out_request_no in trade.refunds:
                return trade, trade.refunds[out_request_no]
        return None


def notify_sign_content(params: dict[str, str]) -> str:
    """Alipay's rule for asynchronous notifications: all but `sign` *and* `sign_type`, sorted."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type") and v)


@dataclass(frozen=True)
class AlipayNotice:
    """A `trade_status_sync` notification. Alipay sends one that is not acknowledged again, the
    very same form: the notify_id and the notify_time of its first sending, and so the same sign."""

    kind: str
    event_id: str
    out_trade_no: str
    url: str
    params: dict[str, str]  # notify_time included

    def form(self) -> dict[str, str]:
        return {**self.params, "sign": platform_sign(notify_sign_content(self.params))}

    def rendered(self) -> dict[str, Any]:
        return {"url": self.url, "form": self.form()}

    def request(self) -> dict[str, Any]:
        return {"data": self.form()}

    def accepted(self, response: httpx.Response) -> bool:
        return response.text.strip() == "success"


def notice(
    trade: Trade, refund: TradeRefund | None = None, url: str | None = None, **overrides: Any
) -> AlipayNotice:
    amount = overrides.get("amount_fen")
    params = {
        "notify_type": "trade_status_sync",
        "notify_id": uuid.uuid4().hex + secrets.token_hex(2),
        "notify_time": _now(),
        "app_id": overrides.get("merchant_id", config.ALIPAY_APP_ID),
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "trade_status": overrides.get("trade_state", trade.trade_status),
        "total_amount": yuan(trade.total if amount is None or refund else amount),
        "buyer_id": trade.buyer_id,
        "seller_id": config.ALIPAY_SELLER_ID,
        "subject": str(trade.biz.get("subject", "")),
        "gmt_create": trade.gmt_create,
    }
    if trade.gmt_payment:
        paid = trade.total if amount is None or refund else amount
        params |= {
            "gmt_payment": trade.gmt_payment,
            "receipt_amount": yuan(paid),
            "buyer_pay_amount": yuan(paid),
        }
    if trade.gmt_close:
        params["gmt_close"] = trade.gmt_close
    if refund is not None:
        # Alipay tells the total refunded on the trade so far, and which refund request this is.
        params |= {
            "out_biz_no": refund.out_request_no,
            "refund_fee": yuan(trade.refunded if amount is None else amount),
            "gmt_refund": refund.gmt_refund + ".000",
        }
    kind = "refund" if refund else "payment"
    return AlipayNotice(kind, params["notify_id"], trade.out_trade_no, url or trade.notify_url, params)


# -- the gateway methods ----------------------------------------------------------------------


def _biz(params: dict[str, str]) -> dict[str, Any]:
    try:
        biz = msgspec.json.decode(params.get("biz_content", ""))
    except msgspec.DecodeError as exc:
        raise GatewayError("40002", "isv.invalid-parameter", f"biz_content: {exc}") from None
    if not isinstance(biz, dict):
        raise GatewayError("40002", "isv.invalid-parameter", "biz_content: a JSON object")
    return biz


def _trade(biz: dict[str, Any], trades: Trades) -> Trade:
    trade = trades.by_out_trade_no.get(str(biz.get("out_trade_no", "")))
    if trade is None or (biz.get("trade_no") and biz["trade_no"] != trade.trade_no):
        raise refused("ACQ.TRADE_NOT_EXIST")
    return trade


def create(params: dict[str, str], trades: Trades) -> dict[str, Any]:
    biz = _biz(params)
    out_trade_no = biz.get("out_trade_no")
    if not isinstance(out_trade_no, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", out_trade_no):
        raise refused("ACQ.INVALID_PARAMETER", "out_trade_no: 1 to 64 of [A-Za-z0-9_-]")
    total = fen(biz.get("total_amount"), "total_amount")
    if not biz.get("subject"):
        raise refused("ACQ.INVALID_PARAMETER", "subject: required")
    if not (biz.get("buyer_id") or biz.get("buyer_open_id")):
        raise refused("ACQ.INVALID_PARAMETER", "buyer_id or buyer_open_id: required")
    if biz.get("product_code", "JSAPI_PAY") != "JSAPI_PAY":
        raise refused("ACQ.INVALID_PARAMETER", "product_code: JSAPI_PAY for a mini-program")
    if "time_expire" in biz:
        try:
            datetime.strptime(str(biz["time_expire"]), TIME_FORMAT)
        except ValueError:
            raise refused("ACQ.INVALID_PARAMETER", "time_expire: yyyy-MM-dd HH:mm:ss") from None
    trade = trades.by_out_trade_no.get(out_trade_no)
    if trade is None:
        trade_no = datetime.now(SHANGHAI).strftime("%Y%m%d") + "22" + f"{secrets.randbelow(10**18):018d}"
        trade = Trade(out_trade_no, trade_no, total, biz, params.get("notify_url", ""), _now())
        trades.by_out_trade_no[out_trade_no] = trade
    elif trade.trade_status in PAID:
        raise refused("ACQ.TRADE_HAS_SUCCESS")
    elif trade.trade_status == "TRADE_CLOSED":
        raise refused("ACQ.TRADE_HAS_CLOSE")
    elif trade.biz != biz:
        raise refused("ACQ.CONTEXT_INCONSISTENT")
    return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no, "trade_no": trade.trade_no}


def query(params: dict[str, str], trades: Trades) -> dict[str, Any]:
    trade = _trade(_biz(params), trades)
    answer = {
        "code": "10000",
        "msg": "Success",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_logon_id": "138******00",
        "trade_status": trade.trade_status,
        "total_amount": yuan(trade.total),
        "buyer_user_id": trade.buyer_id,
    }
    if trade.gmt_payment:
        answer |= {
            "buyer_pay_amount": yuan(trade.total),
            "receipt_amount": yuan(trade.total),
            "send_pay_date": trade.gmt_payment,
        }
    return answer


def close(params: dict[str, str], trades: Trades) -> dict[str, Any]:
    trade = _trade(_biz(params), trades)
    if trade.trade_status != "WAIT_BUYER_PAY":
        raise refused("ACQ.TRADE_STATUS_ERROR")
    trade.trade_status, trade.gmt_close = "TRADE_CLOSED", _now()
    return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}


def refund(params: dict[str, str], trades: Trades) -> dict[str, Any]:
    biz = _biz(params)
    trade = _trade(biz, trades)
    amount = fen(biz.get("refund_amount"), "refund_amount")
    out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
    if not trade.gmt_payment:
        raise refused("ACQ.TRADE_STATUS_ERROR")
    earlier = trade.refunds.get(out_request_no)
    if earlier is not None and earlier.amount != amount:
        raise refused("ACQ.CONTEXT_INCONSISTENT", "out_request_no already used with another amount")
    if earlier is None:
        if amount > trade.total - trade.refunded:
            raise refused("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
        earlier = trade.refunds[out_request_no] = TradeRefund(out_request_no, amount, _now())
        if trade.refunded == trade.total:
            trade.trade_status, trade.gmt_close = "TRADE_CLOSED", _now()
        earlier.notice = notice(trade, earlier, url=params.get("notify_url"))
        if earlier.notice.url:
            trades.courier.send(earlier.notice)
        fund_change = "Y"
    else:
        fund_change = "N"  # this request was served before: no money moved now
    return {
        "code": "10000",
        "msg": "Success",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_logon_id": "138******00",
        "fund_change": fund_change,
        "refund_fee": yuan(trade.refunded),
        "send_back_fee": yuan(amount),
        "gmt_refund_pay": earlier.gmt_refund,
        "buyer_user_id": trade.buyer_id,
    }


def refund_query(params: dict[str, str], trades: Trades) -> dict[str, Any]:
    biz = _biz(params)
    trade = _trade(biz, trades)
    answer: dict[str, Any] = {"code": "10000", "msg": "Success"}
    found = trade.refunds.get(str(biz.get("out_request_no", "")))
    if found is not None:  # an unknown request is answered with no refund in it, as Alipay does
        answer |= {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "out_request_no": found.out_request_no,
            "total_amount": yuan(trade.total),
            "refund_amount": yuan(found.amount),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": found.gmt_refund,
        }
    return answer


METHODS = {
    API_CREATE: create,
    API_QUERY: query,
    API_CLOSE: close,
    API_REFUND: refund,
    API_REFUND_QUERY: refund_query,
}
