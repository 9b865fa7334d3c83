"""E-certificate platform envelope: HMAC-SHA256 signed, AES-256-GCM `encrypt_data`, E-codes.

Request  {app_id, timestamp, nonce, encrypt_data, sign}
  sign = hex HMAC-SHA256(app_secret, "app_id=..&encrypt_data=..&nonce=..&timestamp=..")
Response {code, message, timestamp, nonce, encrypt_data, sign}
  sign = hex HMAC-SHA256(app_secret, "code=..&encrypt_data=..&message=..&nonce=..&timestamp=..")
encrypt_data = base64(12-byte IV || ciphertext || 16-byte tag), associated data = app_id (UTF-8).
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Hashable
from typing import Annotated, Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from miniprogram_stub.sandbox import config

OK = "0"
MESSAGES = {
    OK: "success",
    "E1001": "invalid sign",
    "E1002": "timestamp out of window",
    "E1003": "unknown app_id",
    "E1004": "encrypt_data cannot be decrypted",
    "E1005": "malformed request",
    "E1006": "unknown api",
    "E1007": "nonce already used",
    "E2001": "not insured",
    "E2002": "name does not match the id number",
    "E2004": "insurance suspended",
    "E2101": "face assertion invalid",
    "E2102": "face assertion expired",
    "E2103": "face does not belong to this person",
    "E2104": "face liveness or score too low",
    "E2105": "face assertion already used",
    "E2201": "birth date outside the newborn enrolment window",
    "E2202": "birth certificate number is not valid",
    "E2203": "birth certificate enrolled with another name or birth date",
    "E2204": "guardian is not insured",
    "E2205": "region is not the guardian's",
}
_IV_BYTES = 12
_TAG_BYTES = 16


class EcertError(Exception):
    """Answered as a signed envelope with this code and an empty `encrypt_data`."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = MESSAGES.get(code, "sandbox error") + (f": {detail}" if detail else "")


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    app_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    timestamp: int
    nonce: Annotated[str, msgspec.Meta(min_length=16, max_length=64)]
    encrypt_data: str
    sign: Annotated[str, msgspec.Meta(max_length=128)]


class Reply(msgspec.Struct):
    code: str
    message: str
    timestamp: int
    nonce: str
    encrypt_data: str
    sign: str


def _hmac_hex(text: str) -> str:
    return hmac.new(config.ECERT_APP_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def request_sign_content(env: Envelope) -> str:
    return f"app_id={env.app_id}&encrypt_data={env.encrypt_data}&nonce={env.nonce}&timestamp={env.timestamp}"


def sign_ok(env: Envelope) -> bool:
    return hmac.compare_digest(_hmac_hex(request_sign_content(env)).encode(), env.sign.encode())


def encrypt(data: Any, app_id: str) -> str:
    iv = secrets.token_bytes(_IV_BYTES)
    sealed = AESGCM(config.ecert_data_key()).encrypt(iv, msgspec.json.encode(data), app_id.encode())
    return base64.b64encode(iv + sealed).decode()


def decrypt(encrypt_data: str, app_id: str) -> Any:
    """The decrypted JSON value; anything that does not open and parse is E1004."""
    try:
        raw = base64.b64decode(encrypt_data, validate=True)
        if len(raw) < _IV_BYTES + _TAG_BYTES:
            raise EcertError("E1004", "too short")
        plain = AESGCM(config.ecert_data_key()).decrypt(raw[:_IV_BYTES], raw[_IV_BYTES:], app_id.encode())
        return msgspec.json.decode(plain)
    except (binascii.Error, ValueError, InvalidTag, msgspec.DecodeError):
        raise EcertError("E1004") from None


def reply(code: str, message: str, encrypt_data: str = "", nonce: str = "") -> Reply:
    """Every answer is signed with the app secret, errors included, and echoes the request's
    nonce so a client can tell its answer from a replayed one."""
    timestamp, nonce = int(time.time()), nonce or secrets.token_hex(16)
    content = f"code={code}&encrypt_data={encrypt_data}&message={message}&nonce={nonce}&timestamp={timestamp}"
    return Reply(code, message, timestamp, nonce, encrypt_data, _hmac_hex(content))


class SeenOnce:
    """Keys accepted within the last `ttl_s` seconds (request nonces, face assertion jtis)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        # Insertion order is expiry order (one ttl), so expired keys sit at the front.
        self._expires: dict[Hashable, float] = {}

    def seen(self, key: Hashable) -> bool:
        now = time.monotonic()
        while self._expires:
            oldest = next(iter(self._expires))
            if self._expires[oldest] > now:
                break
            del self._expires[oldest]
        return key in self._expires

    def add(self, key: Hashable) -> None:
        self._expires[key] = time.monotonic() + self._ttl_s
