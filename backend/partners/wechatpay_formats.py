"""WeChat Pay API v3's formats: its states and codes, RSA-SHA256 signatures, times and amounts."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from backend.partners.channels import OrderState, RefundState

CHINA = ZoneInfo("Asia/Shanghai")
SCHEME = "WECHATPAY2-SHA256-RSA2048"
WINDOW_SECONDS = 300  # answers and notifications older or newer than this are refused
ORDER_TYPES = {"REG": "REG_PAY", "DIAG": "DIAG_PAY", "PHARMACY": "PHARMACY_PAY", "IN_HOSP": "IN_HOSP_PAY"}
TRADE_STATES: dict[str, OrderState] = {
    "NOTPAY": "PENDING",
    "USERPAYING": "PENDING",
    "SUCCESS": "PAID",
    "REFUND": "PAID",  # paid, then (partly) refunded: refunds are tracked on their own
    "CLOSED": "CLOSED",
    "REVOKED": "CLOSED",
    "PAYERROR": "FAILED",
}
NOTIFIED_TRADE_STATES = {"SUCCESS": "PAID", "CLOSED": "CLOSED", "REVOKED": "CLOSED", "PAYERROR": "FAILED"}
NOTIFIED_REFUND_STATES = {"SUCCESS": "SUCCEEDED", "ABNORMAL": "ABNORMAL", "CLOSED": "FAILED"}
REFUND_STATES: dict[str, RefundState] = {
    "SUCCESS": "SUCCEEDED",
    "PROCESSING": "PROCESSING",
    "ABNORMAL": "ABNORMAL",
    "CLOSED": "FAILED",
}
# Worth sending again (with the same out_trade_no / out_refund_no, which deduplicate).
TRANSIENT_CODES = {"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR"}
NOT_FOUND_CODES = {"ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS", "ORDERNOTEXIST"}
ORDER_PAID_CODE = "ORDERPAID"


class Reply(NamedTuple):
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code", ""))


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def new_nonce() -> str:
    return secrets.token_hex(16).upper()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def fen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not an amount in fen: {value!r}")
    return int(value)


def moment(value: Any) -> datetime | None:
    """An RFC 3339 time of WeChat Pay's answers; one without its offset is refused."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"a time without its offset: {value!r}")
    return parsed
