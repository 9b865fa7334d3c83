"""WeChat Pay API v3: JSAPI orders with medical-insurance mixed payment, refunds, notifications.

Every request carries `Authorization: WECHATPAY2-SHA256-RSA2048 ...`, an RSA-SHA256 signature with
the merchant key over `METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`. Every answer and notification is
signed by WeChat Pay over `timestamp\\nnonce\\nbody\\n` with the key its `Wechatpay-Serial` names;
it is checked, within five minutes of our clock, before anything in it is used. Notifications'
resources are AES-256-GCM encrypted under the APIv3 key.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.partners.channels import (
    Answer,
    ChannelEvent,
    ChannelName,
    NotificationInvalid,
    OrderRequest,
    OrderStatus,
    RefundStatus,
    Relative,
)
from backend.partners.http import TransientPartnerError, rejected, signature_invalid, unusable, with_retries
from backend.partners.wechatpay_formats import (
    NOT_FOUND_CODES,
    NOTIFIED_REFUND_STATES,
    NOTIFIED_TRADE_STATES,
    ORDER_PAID_CODE,
    ORDER_TYPES,
    REFUND_STATES,
    SCHEME,
    TRADE_STATES,
    TRANSIENT_CODES,
    WINDOW_SECONDS,
    Reply,
    card_type,
    fen,
    id_digest,
    moment,
    new_nonce,
    rfc3339,
    rsa_encrypt,
    rsa_sign,
    rsa_verify,
)
from backend.settings import PartnerHttpSettings, SettingsError, WechatPaySettings

log = structlog.get_logger(__name__)


class WechatPayClient:
    """A `PaymentChannel` for WeChat Pay (direct merchant, JSAPI in the mini-program)."""

    partner = "wechatpay"
    name: ChannelName = "wechat"

    def __init__(
        self,
        settings: WechatPaySettings,
        appid: str,
        http_settings: PartnerHttpSettings,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.appid = appid
        self.http_settings = http_settings
        self.http = http
        self.merchant_id = settings.mchid
        private_key = serialization.load_pem_private_key(
            settings.merchant_private_key_file.read_bytes(), password=None
        )
        public_key = serialization.load_pem_public_key(settings.platform_public_key_file.read_bytes())
        if not isinstance(private_key, rsa.RSAPrivateKey) or not isinstance(public_key, rsa.RSAPublicKey):
            raise SettingsError("MEDPAY_WECHATPAY_*_KEY_FILE: WeChat Pay keys are RSA keys")
        apiv3_key = settings.apiv3_key.encode()
        if len(apiv3_key) != 32:
            raise SettingsError("MEDPAY_WECHATPAY_APIV3_KEY: the APIv3 key has 32 characters")
        self._merchant_key = private_key
        self._platform_keys = {settings.platform_public_key_id: public_key}
        self._aead = AESGCM(apiv3_key)

    # -- the channel --------------------------------------------------------------------------

    async def create_order(self, order: OrderRequest) -> dict[str, str]:
        """A JSAPI order for the cash part, then the medical-insurance mixed order around it;
        answers what `wx.requestMedicalInsurancePay` takes."""
        order_type = ORDER_TYPES.get(order.order_type)
        insurance_fen = order.fund_fen + order.personal_account_fen
        if order_type is None or order.cash_fen <= 0 or order.total_fen != insurance_fen + order.cash_fen:
            raise ValueError(f"not a payable order: {order!r}")
        jsapi = {
            "appid": self.appid,
            "mchid": self.merchant_id,
            "description": order.description,
            "out_trade_no": order.out_trade_no,
            "time_expire": rfc3339(order.expires_at),
            "notify_url": order.notify_url,
            "amount": {"total": order.cash_fen, "currency": "CNY"},
            "payer": {"openid": order.payer_id},
        }
        reply = await self._call("POST", "/v3/pay/transactions/jsapi", jsapi)
        prepay_id = self._field(reply, "prepay_id", "WeChat Pay refused the order")
        mixed = insurance_fen > 0
        med_ins = {
            "mix_pay_type": "CASH_AND_INSURANCE" if mixed else "CASH_ONLY",
            "order_type": order_type,
            "appid": self.appid,
            "openid": order.payer_id,
            "pay_for_relatives": order.relative is not None,
            **({"relative": order.relative} if order.relative is not None else {}),
            "out_trade_no": order.out_trade_no,
            "serial_no": order.out_trade_no,
            "med_inst_name": order.institution_name,
            "med_inst_no": order.institution_code,
            "total_fee": order.total_fen,
            "med_ins_gov_fee": order.fund_fen,
            "med_ins_self_fee": order.personal_account_fen,
            "med_ins_other_fee": 0,
            "med_ins_cash_fee": order.cash_fen if mixed else 0,
            "wechat_pay_cash_fee": order.cash_fen,
            "callback_url": order.notify_url,
            "prepay_id": prepay_id,
        }
        reply = await self._call("POST", "/v3/med-ins/orders", med_ins)
        mix_trade_no = self._field(reply, "mix_trade_no", "WeChat Pay refused the insurance order")
        timestamp, nonce, package = str(int(time.time())), new_nonce(), f"prepay_id={prepay_id}"
        return {
            "mixTradeNo": mix_trade_no,
            "appId": self.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": rsa_sign(self._merchant_key, f"{self.appid}\n{timestamp}\n{nonce}\n{package}\n"),
        }

    def seal_relative(self, relative: Relative) -> dict[str, Any]:
        """Whom a relative pays for: the name encrypted with WeChat Pay's key, the number digested."""
        key = self._platform_keys[self.settings.platform_public_key_id]
        return {
            "name": rsa_encrypt(key, relative.name),
            "id_digest": id_digest(relative.id_number),
            "card_type": card_type(relative.id_type, relative.id_number),
        }

    async def query_order(self, out_trade_no: str) -> OrderStatus:
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
        reply = await self._call("GET", path, query={"mchid": self.merchant_id})
        if reply.status == 404 or reply.code in NOT_FOUND_CODES:
            return OrderStatus(out_trade_no, "NOT_FOUND", merchant_id=self.merchant_id)
        if reply.status != 200:
            raise self._refusal(reply, "WeChat Pay refused the order query")
        try:
            body = reply.body
            if body["out_trade_no"] != out_trade_no:
                raise ValueError("the answer is about another order")
            state = TRADE_STATES[body["trade_state"]]
            return OrderStatus(
                out_trade_no,
                state,
                amount_fen=fen(body["amount"]["total"]) if "amount" in body else None,
                transaction_id=body.get("transaction_id") or None,
                paid_at=moment(body.get("success_time")),
                merchant_id=str(body["mchid"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise unusable(self.partner, f"WeChat Pay's order answer is unusable: {exc}") from exc

    async def close_order(self, out_trade_no: str) -> OrderStatus:
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        reply = await self._call("POST", path, {"mchid": self.merchant_id})
        if reply.status == 204:
            return OrderStatus(out_trade_no, "CLOSED", merchant_id=self.merchant_id)
        if reply.status == 404 or reply.code in NOT_FOUND_CODES:
            return OrderStatus(out_trade_no, "NOT_FOUND", merchant_id=self.merchant_id)
        if reply.code == ORDER_PAID_CODE:
            log.info("wechat pay order was paid before it could be closed", out_trade_no=out_trade_no)
            return await self.query_order(out_trade_no)
        raise self._refusal(reply, "WeChat Pay refused to close the order")

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
        body: dict[str, Any] = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        if reason:
            body["reason"] = reason[:80]
        if notify_url:
            body["notify_url"] = notify_url
        reply = await self._call("POST", "/v3/refund/domestic/refunds", body)
        if reply.status != 200:
            raise self._refusal(reply, "WeChat Pay refused the refund")
        return self._refund_status(reply, out_trade_no, out_refund_no)

    async def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundStatus:
        path = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        reply = await self._call("GET", path)
        if reply.status == 404 or reply.code in NOT_FOUND_CODES:
            return RefundStatus(out_refund_no, "NOT_FOUND")
        if reply.status != 200:
            raise self._refusal(reply, "WeChat Pay refused the refund query")
        return self._refund_status(reply, out_trade_no, out_refund_no)

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelEvent:
        problem = self._signature_problem(headers, body)
        if problem:
            raise NotificationInvalid(problem)
        try:
            envelope = json.loads(body)
            resource = envelope["resource"]
            if resource["algorithm"] != "AEAD_AES_256_GCM":
                raise ValueError(f"algorithm {resource['algorithm']!r}")
            associated = str(resource.get("associated_data") or "").encode() or None
            plain = self._aead.decrypt(
                str(resource["nonce"]).encode(), base64.b64decode(resource["ciphertext"]), associated
            )
            data = json.loads(plain)
            event_type = str(envelope["event_type"])
            payload = {
                "id": envelope["id"],
                "create_time": envelope.get("create_time"),
                "event_type": event_type,
                "summary": envelope.get("summary"),
                "resource": data,
            }
            common: dict[str, Any] = {
                "channel": "wechat",
                "event_id": str(envelope["id"]),
                "out_trade_no": str(data["out_trade_no"]),
                "merchant_id": str(data["mchid"]),
                "transaction_id": data.get("transaction_id") or None,
                "occurred_at": moment(data.get("success_time")),
                "payload": payload,
            }
            if event_type.startswith("TRANSACTION.") and resource.get("original_type") == "transaction":
                return ChannelEvent(
                    kind="payment",
                    state=NOTIFIED_TRADE_STATES[data["trade_state"]],
                    amount_fen=fen(data["amount"]["total"]),
                    **common,
                )
            if event_type.startswith("REFUND.") and resource.get("original_type") == "refund":
                return ChannelEvent(
                    kind="refund",
                    state=NOTIFIED_REFUND_STATES[data["refund_status"]],
                    amount_fen=fen(data["amount"]["refund"]),
                    out_refund_no=str(data["out_refund_no"]),
                    **common,
                )
            raise ValueError(f"event {event_type!r} of {resource.get('original_type')!r}")
        except InvalidTag as exc:
            raise NotificationInvalid("the resource does not decrypt under our APIv3 key") from exc
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise NotificationInvalid(f"malformed notification: {exc!r}") from exc

    def acknowledge(self) -> Answer:
        return Answer(204, "application/json", b"")

    def refuse(self, message: str) -> Answer:
        body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode()
        return Answer(400, "application/json", body)

    # -- the protocol -------------------------------------------------------------------------

    def authorization(self, method: str, url: str, body: str) -> str:
        """The `Authorization` header for a request to `url` (path and query) with this body."""
        timestamp, nonce = str(int(time.time())), new_nonce()
        signature = rsa_sign(self._merchant_key, f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n")
        return (
            f'{SCHEME} mchid="{self.merchant_id}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{self.settings.merchant_serial_no}"'
        )

    def _signature_problem(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Why the platform's signature over this answer or notification is not good, or None."""
        lower = {k.lower(): v for k, v in headers.items()}
        serial = lower.get("wechatpay-serial", "")
        key = self._platform_keys.get(serial)
        if key is None:
            return f"unknown Wechatpay-Serial {serial!r}"
        timestamp, nonce = lower.get("wechatpay-timestamp", ""), lower.get("wechatpay-nonce", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not nonce:
            return "Wechatpay-Timestamp or Wechatpay-Nonce missing"
        if abs(time.time() - int(timestamp)) > WINDOW_SECONDS:
            return "Wechatpay-Timestamp outside the five-minute window"
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        if not rsa_verify(key, message, lower.get("wechatpay-signature", "")):
            return "Wechatpay-Signature does not verify"
        return None

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Reply:
        """One API call, its answer's signature checked; 5xx and busy answers are sent again."""
        text = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        url = self.settings.api_base + path + (f"?{urlencode(query)}" if query else "")
        parts = urlsplit(url)
        signed_url = parts.path + (f"?{parts.query}" if parts.query else "")

        async def once() -> Reply:
            headers = {
                "Authorization": self.authorization(method, signed_url, text),
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Wechatpay-Serial": self.settings.platform_public_key_id,
            }
            response = await self.http.request(method, url, content=text.encode(), headers=headers)
            if response.status_code >= 500:
                raise TransientPartnerError(self.partner, f"HTTP {response.status_code}")
            problem = self._signature_problem(response.headers, response.content)
            if problem:
                log.error("wechat pay answer failed verification", problem=problem, path=path)
                raise signature_invalid(self.partner, f"WeChat Pay's answer: {problem}")
            try:
                answer = json.loads(response.content) if response.content else {}
            except ValueError as exc:
                raise unusable(self.partner, "WeChat Pay's answer could not be read") from exc
            if not isinstance(answer, dict):
                raise unusable(self.partner, "WeChat Pay's answer is not an object")
            reply = Reply(response.status_code, answer)
            if response.status_code == 429 or reply.code in TRANSIENT_CODES:
                raise TransientPartnerError(self.partner, reply.code or "HTTP 429")
            return reply

        return await with_retries(self.http_settings, self.partner, once)

    def _field(self, reply: Reply, name: str, refusal: str) -> str:
        value = reply.body.get(name)
        if reply.status != 200 or not isinstance(value, str) or not value:
            raise self._refusal(reply, refusal)
        return value

    def _refusal(self, reply: Reply, message: str) -> Exception:
        if reply.status == 200:  # a success that lacks what it should carry: not a refusal
            return unusable(self.partner, f"{message}: the answer lacks a field it should carry")
        log.error(
            "wechat pay refused", status=reply.status, code=reply.code, message=reply.body.get("message")
        )
        return rejected(
            self.partner,
            message,
            platform_code=reply.code or f"HTTP {reply.status}",
            platform_message=str(reply.body.get("message", ""))[:200],
        )

    def _refund_status(self, reply: Reply, out_trade_no: str, out_refund_no: str) -> RefundStatus:
        try:
            body = reply.body
            if body["out_refund_no"] != out_refund_no or body["out_trade_no"] != out_trade_no:
                raise ValueError("the answer is about another refund")
            return RefundStatus(
                out_refund_no,
                REFUND_STATES[body["status"]],
                refund_id=str(body["refund_id"]),
                amount_fen=fen(body["amount"]["refund"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise unusable(self.partner, f"WeChat Pay's refund answer is unusable: {exc}") from exc
