"""WeChat Pay API v3 protocol: request authorization, signed answers, encrypted notifications."""

import base64
import binascii
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar import Response

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.alipay_openapi import SHANGHAI

SCHEME = "WECHATPAY2-SHA256-RSA2048"
JSON = "application/json"
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NONCE_ALPHABET = string.ascii_letters + string.digits


def now() -> str:
    """RFC 3339 in Beijing time, as WeChat Pay writes times."""
    return datetime.now(SHANGHAI).isoformat(timespec="seconds")


def nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def encode(body: Any) -> bytes:
    """JSON as WeChat Pay sends it: compact, non-ASCII unescaped."""
    return msgspec.json.encode(body)


def signed_headers(body: bytes) -> dict[str, str]:
    """The platform's signature over an answer or notification body."""
    timestamp, once = str(int(time.time())), nonce()
    message = f"{timestamp}\n{once}\n".encode() + body + b"\n"
    key = config.wechatpay_platform_private_key()
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": once,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": config.WECHATPAY_PUBLIC_KEY_ID,
        "Wechatpay-Signature-Type": SCHEME,
        "Request-ID": str(uuid.uuid4()),
    }


def answer(status: int, body: dict[str, Any] | None = None) -> Response[bytes]:
    content = b"" if body is None else encode(body)
    return Response(content, status_code=status, media_type=JSON, headers=signed_headers(content))


def error(status: int, code: str, message: str) -> Response[bytes]:
    return answer(status, {"code": code, "message": message})


def authorization_problem(method: str, url: str, header: str, body: bytes) -> str | None:
    """Why this request's `Authorization` does not hold, or None."""
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        return f"Authorization scheme must be {SCHEME}"
    params = dict(_AUTH_PARAM.findall(rest))
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - params.keys()
    if missing:
        return f"Authorization lacks {sorted(missing)}"
    if params["mchid"] != config.WECHATPAY_MCHID:
        return "mchid is not a merchant of the sandbox"
    if params["serial_no"] != config.WECHATPAY_MERCHANT_SERIAL_NO:
        return "serial_no is not the merchant's API certificate"
    if not params["timestamp"].isdigit():
        return "timestamp is not a number"
    if abs(time.time() - int(params["timestamp"])) > config.WECHATPAY_TIMESTAMP_WINDOW_S:
        return "timestamp is too far from WeChat Pay's clock"
    message = f"{method}\n{url}\n{params['timestamp']}\n{params['nonce_str']}\n".encode() + body + b"\n"
    try:
        config.wechatpay_merchant_public_key().verify(
            base64.b64decode(params["signature"], validate=True),
            message,
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return "signature does not verify with the merchant's certificate"
    return None


def encrypt_resource(original_type: str, data: dict[str, Any]) -> dict[str, str]:
    """A notification's `resource`: AES-256-GCM under the APIv3 key, tag appended, base64."""
    once = nonce(12)
    aead = AESGCM(config.WECHATPAY_APIV3_KEY.encode())
    associated = original_type
    ciphertext = aead.encrypt(once.encode(), encode(data), associated.encode())
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated,
        "nonce": once,
    }


def notification_body(event_type: str, summary: str, original_type: str, data: dict[str, Any]) -> bytes:
    return encode(
        {
            "id": str(uuid.uuid4()),
            "create_time": now(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": encrypt_resource(original_type, data),
        }
    )


@dataclass(frozen=True)
class WechatNotice:
    """A notification as WeChat Pay posts it: a fixed JSON body, signed anew at each sending."""

    kind: str
    event_id: str
    out_trade_no: str
    url: str
    body: bytes

    @classmethod
    def build(
        cls, kind: str, out_trade_no: str, url: str, event_type: str, summary: str, data: dict[str, Any]
    ) -> "WechatNotice":
        original_type = "transaction" if kind == "payment" else "refund"
        body = notification_body(event_type, summary, original_type, data)
        return cls(kind, msgspec.json.decode(body)["id"], out_trade_no, url, body)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": JSON, **signed_headers(self.body)}

    def rendered(self) -> dict[str, Any]:
        return {"url": self.url, "headers": self.headers(), "body": self.body.decode()}

    def request(self) -> dict[str, Any]:
        return {"content": self.body, "headers": self.headers()}

    def accepted(self, response: httpx.Response) -> bool:
        return 200 <= response.status_code < 300
