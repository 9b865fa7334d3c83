"""WeChat Pay API v3's formats: its states and codes, RSA-SHA256 signatures, times and amounts."""

from __future__ import annotations

import base64
import binascii
import hashlib
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


def rsa_encrypt(key: rsa.RSAPublicKey, text: str) -> str:
    """A sensitive field as WeChat Pay takes it: RSA-OAEP (SHA-1) with its public key, base64."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return base64.b64encode(key.encrypt(text.encode(), oaep)).decode()


# Our document types as WeChat Pay's medical-insurance orders name them (card_type).
CARD_TYPES = {
    "resident_id": "ID_CARD",
    "hk_macau_tw_residence": "ID_CARD",  # 18 digits, the resident ID's format
    "foreign_permanent_residence": "FOREIGN_PERMANENT_RESIDENT",
    "taiwan_permit": "MAINLAND_TRAVEL_PERMIT_FOR_TW",
    # A newborn not yet holding an ID card is named by the household register they are entered in.
    "birth_certificate": "HOUSEHOLD_REGISTRATION",
}


def card_type(id_type: str, id_number: str) -> str:
    if id_type == "hk_macau_permit":  # H... for Hong Kong residents, M... for Macao's
        return (
            "MAINLAND_TRAVEL_PERMIT_FOR_MO"
            if id_number.upper().startswith("M")
            else ("MAINLAND_TRAVEL_PERMIT_FOR_HK")
        )
    if id_type not in CARD_TYPES:
        raise ValueError(f"no WeChat Pay card_type for {id_type!r} documents")
    return CARD_TYPES[id_type]


def id_digest(id_number: str) -> str:
    """WeChat Pay's digest of a document number: MD5 of the number, upper-cased, in hex."""
    return hashlib.md5(id_number.upper().encode(), usedforsecurity=False).hexdigest()


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
