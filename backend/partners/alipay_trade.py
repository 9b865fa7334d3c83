"""Alipay trades for the mini-program (`alipay.trade.*` through the OpenAPI gateway) and their
asynchronous notifications.

Requests and answers are signed as every gateway call is (see `alipay.AlipayClient`). Amounts
are yuan strings on the wire ("12.34"): converted to and from fen by string arithmetic, never
through a float, and a malformed one is refused. Notifications are form posts signed over all
parameters but `sign` and `sign_type`, sorted.

A notification's age is not checked: Alipay sends one it did not see acknowledged again over about
25 hours (4m, 10m, 10m, 1h, 2h, 6h, 15h), the same notification with the same `notify_id`, and
promises no fresh `notify_time`. A signed notification, however old, says what Alipay said, and
replaying it changes nothing: the inbox keeps each `notify_id` once, a payment completes its order
once (for the order's amount and merchant only), and closures and refunds are confirmed by query
(see docs/callbacks.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog

from backend.partners.alipay import CHINA, AlipayClient
from backend.partners.channels import (
    Answer,
    ChannelEvent,
    ChannelName,
    NotificationInvalid,
    OrderRequest,
    OrderState,
    OrderStatus,
    RefundState,
    RefundStatus,
    Relative,
)
from backend.partners.http import TransientPartnerError, rejected, unusable, with_retries
from backend.platform.errors import AppError

log = structlog.get_logger(__name__)

CREATE, QUERY, CLOSE = "alipay.trade.create", "alipay.trade.query", "alipay.trade.close"
REFUND, REFUND_QUERY = "alipay.trade.refund", "alipay.trade.fastpay.refund.query"
SUCCESS = "10000"
TRANSIENT_CODES = {"20000", "20001"}
TRANSIENT_SUB_CODES = {"ACQ.SYSTEM_ERROR", "isp.unknow-error"}
NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")
_ALIPAY_USER_ID = re.compile(r"2088[0-9]{12}")
PAID_STATES = {"TRADE_SUCCESS", "TRADE_FINISHED"}


def fen_to_yuan(fen: int) -> str:
    """12345 -> "123.45"; Alipay's `Price` with exactly two decimals."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError(f"not an amount in fen: {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def yuan_to_fen(text: str) -> int:
    """ "123.45" -> 12345 ("123", "123.4" too); anything else (signs, exponents, 3 decimals) is refused."""
    match = _YUAN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an amount in yuan: {text!r}")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def notify_sign_content(params: Mapping[str, str]) -> str:
    """What an asynchronous notification's `sign` covers: all but `sign` and `sign_type`, sorted."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type") and v)


def _beijing(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text[:19], TIME_FORMAT).replace(tzinfo=CHINA)


class AlipayTradeClient:
    """A `PaymentChannel` for Alipay mini-program trades (JSAPI_PAY)."""

    partner = "alipay"
    name: ChannelName = "alipay"

    def __init__(self, gateway: AlipayClient) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.merchant_id = gateway.settings.app_id

    def seal_relative(self, relative: Relative) -> None:
        """Alipay's mini-program trade does not name whom it is paid for."""

    async def create_order(self, order: OrderRequest) -> dict[str, str]:
        """A trade for the cash part; answers what `my.tradePay` takes (`tradeNO`)."""
        if order.cash_fen <= 0:
            raise ValueError(f"not a payable order: {order!r}")
        buyer = "buyer_id" if _ALIPAY_USER_ID.fullmatch(order.payer_id) else "buyer_open_id"
        biz = {
            "out_trade_no": order.out_trade_no,
            "total_amount": fen_to_yuan(order.cash_fen),
            "subject": order.description[:256],
            buyer: order.payer_id,
            "product_code": "JSAPI_PAY",
            "op_app_id": self.settings.app_id,
            "time_expire": order.expires_at.astimezone(CHINA).strftime(TIME_FORMAT),
        }
        ok, answer = await self._call(CREATE, biz, order.notify_url)
        trade_no = answer.get("trade_no")
        if not ok:
            raise self._refusal(answer, "Alipay refused the trade")
        if not isinstance(trade_no, str) or answer.get("out_trade_no") != order.out_trade_no:
            raise unusable(self.partner, "Alipay's trade answer lacks the trade or names another")
        return {"tradeNO": trade_no}

    async def query_order(self, out_trade_no: str) -> OrderStatus:
        ok, answer = await self._call(QUERY, {"out_trade_no": out_trade_no})
        if answer.get("sub_code") == NOT_EXIST:
            return OrderStatus(out_trade_no, "NOT_FOUND", merchant_id=self.merchant_id)
        if not ok:
            raise self._refusal(answer, "Alipay refused the trade query")
        try:
            if answer["out_trade_no"] != out_trade_no:
                raise ValueError("the answer is about another trade")
            status = answer["trade_status"]
            paid_at = _beijing(answer.get("send_pay_date"))
            state: OrderState
            if status == "WAIT_BUYER_PAY":
                state = "PENDING"
            elif status in PAID_STATES or (status == "TRADE_CLOSED" and paid_at):
                state = "PAID"  # a paid trade closes when fully refunded: it was paid all the same
            elif status == "TRADE_CLOSED":
                state = "CLOSED"
            else:
                raise ValueError(f"trade_status {status!r}")
            return OrderStatus(
                out_trade_no,
                state,
                amount_fen=yuan_to_fen(answer["total_amount"]),
                transaction_id=answer.get("trade_no") or None,
                paid_at=paid_at,
                merchant_id=self.merchant_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise unusable(self.partner, f"Alipay's trade answer is unusable: {exc}") from exc

    async def close_order(self, out_trade_no: str) -> OrderStatus:
        ok, answer = await self._call(CLOSE, {"out_trade_no": out_trade_no})
        if ok:
            return OrderStatus(out_trade_no, "CLOSED", merchant_id=self.merchant_id)
        if answer.get("sub_code") == NOT_EXIST:
            return OrderStatus(out_trade_no, "NOT_FOUND", merchant_id=self.merchant_id)
        if answer.get("sub_code") == STATUS_ERROR:  # paid (or closed) meanwhile: say which
            return await self.query_order(out_trade_no)
        raise self._refusal(answer, "Alipay refused to close the trade")

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
        notify_url: str,
    ) -> RefundStatus:
        if refund_fen <= 0 or refund_fen > total_fen:
            raise ValueError(f"refund {refund_fen} of {total_fen}")
        biz = {
            "out_trade_no": out_trade_no,
            "refund_amount": fen_to_yuan(refund_fen),
            "out_request_no": out_refund_no,
            "refund_reason": reason[:256],
        }
        ok, answer = await self._call(REFUND, biz, notify_url or None)
        if not ok:
            raise self._refusal(answer, "Alipay refused the refund")
        if answer.get("out_trade_no") != out_trade_no:
            raise unusable(self.partner, "Alipay's refund answer names another trade")
        if answer.get("fund_change") == "Y":
            return RefundStatus(out_refund_no, "SUCCEEDED", amount_fen=refund_fen)
        # "N": this out_request_no was served before (or is being served): ask what came of it.
        # The refund was accepted; a query that fails says nothing about it, so it is no refusal.
        try:
            return await self.query_refund(out_trade_no, out_refund_no)
        except AppError as exc:
            if exc.code != "PARTNER_REJECTED":
                raise
            raise unusable(self.partner, f"Alipay's refund query failed: {exc.message}") from exc

    async def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundStatus:
        biz = {"out_trade_no": out_trade_no, "out_request_no": out_refund_no}
        ok, answer = await self._call(REFUND_QUERY, biz)
        if answer.get("sub_code") == NOT_EXIST:
            return RefundStatus(out_refund_no, "NOT_FOUND")
        if not ok:
            raise self._refusal(answer, "Alipay refused the refund query")
        if not answer.get("refund_amount"):  # Alipay's way of saying it knows no such refund
            return RefundStatus(out_refund_no, "NOT_FOUND")
        try:
            if answer.get("out_request_no", out_refund_no) != out_refund_no:
                raise ValueError("the answer is about another refund")
            state: RefundState = (
                "SUCCEEDED"
                if answer.get("refund_status", "REFUND_SUCCESS") == "REFUND_SUCCESS"
                else "PROCESSING"
            )
            return RefundStatus(out_refund_no, state, amount_fen=yuan_to_fen(answer["refund_amount"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise unusable(self.partner, f"Alipay's refund answer is unusable: {exc}") from exc

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelEvent:
        try:
            params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotificationInvalid("not a UTF-8 form") from exc
        signature = params.get("sign", "")
        if not signature or params.get("sign_type") != "RSA2":
            raise NotificationInvalid("unsigned, or not signed with RSA2")
        if not self.gateway.platform_signed(notify_sign_content(params), signature):
            raise NotificationInvalid("sign does not verify with Alipay's key")
        try:
            datetime.strptime(params.get("notify_time", ""), TIME_FORMAT)  # "yyyy-MM-dd HH:mm:ss"
            if params.get("notify_type") != "trade_status_sync":
                raise ValueError(f"notify_type {params.get('notify_type')!r}")
            if params.get("seller_id", self.settings.seller_id) != self.settings.seller_id:
                raise NotificationInvalid("a notification for another seller")
            payload = {k: v for k, v in params.items() if k != "sign"}
            common: dict[str, Any] = {
                "channel": "alipay",
                "event_id": params["notify_id"],
                "out_trade_no": params["out_trade_no"],
                "merchant_id": params["app_id"],
                "transaction_id": params.get("trade_no") or None,
                "payload": payload,
            }
            status = params["trade_status"]
            if params.get("out_biz_no") and params.get("refund_fee"):
                return ChannelEvent(
                    kind="refund",
                    state="SUCCEEDED",
                    amount_fen=yuan_to_fen(params["refund_fee"]),
                    out_refund_no=params["out_biz_no"],
                    occurred_at=_beijing(params.get("gmt_refund")),
                    **common,
                )
            if status in PAID_STATES:
                state, occurred = "PAID", params.get("gmt_payment")
            elif status == "TRADE_CLOSED":
                state, occurred = "CLOSED", params.get("gmt_close")
            else:
                raise ValueError(f"trade_status {status!r}")
            return ChannelEvent(
                kind="payment",
                state=state,
                amount_fen=yuan_to_fen(params["total_amount"]),
                occurred_at=_beijing(occurred),
                **common,
            )
        except (KeyError, ValueError) as exc:
            raise NotificationInvalid(f"malformed notification: {exc!r}") from exc

    def acknowledge(self) -> Answer:
        return Answer(200, "text/plain", b"success")

    def refuse(self, message: str) -> Answer:
        # Alipay sends again until it reads `success`; the reason is for our logs only.
        log.warning("alipay notification refused", reason=message)
        return Answer(400, "text/plain", b"fail")

    async def _call(
        self, method: str, biz: dict[str, Any], notify_url: str | None = None
    ) -> tuple[bool, dict[str, Any]]:
        """(did it succeed (code 10000), the verified answer); busy answers and 5xx are sent again."""
        params = {"biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":"))}
        if notify_url:
            params["notify_url"] = notify_url

        async def once() -> tuple[bool, dict[str, Any]]:
            response = await self.gateway.http.post(
                self.settings.gateway, data=self.gateway.signed(method, params)
            )
            is_error, answer = self.gateway.verified(response, method)
            code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
            if code in TRANSIENT_CODES or sub_code in TRANSIENT_SUB_CODES:
                raise TransientPartnerError(self.partner, sub_code or code)
            return not is_error and code == SUCCESS, answer

        return await with_retries(self.gateway.http_settings, self.partner, once)

    def _refusal(self, answer: dict[str, Any], message: str) -> Exception:
        code = str(answer.get("sub_code") or answer.get("code") or "")
        log.error(
            "alipay refused", method_message=message, code=answer.get("code"), sub_code=answer.get("sub_code")
        )
        return rejected(
            self.partner, message, platform_code=code, platform_message=str(answer.get("sub_msg", ""))[:200]
        )
