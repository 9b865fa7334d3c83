"""Alipay OpenAPI protocol: RSA2 sign content, gateway error codes, signed response envelopes."""

import base64
import binascii
from collections.abc import Mapping
from datetime import timedelta, timezone
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from miniprogram_stub.sandbox import config

JSON_UTF8 = "application/json;charset=utf-8"
# China has kept UTC+8 without daylight saving since 1991; no tz database needed.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

MSG = {
    "20000": "Service Currently Unavailable",
    "20001": "Insufficient Token Permissions",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
    "40006": "Insufficient Permissions",
}
SUB_MSG = {
    "isp.unknow-error": "系统繁忙",
    "isv.missing-app-id": "缺少AppID参数",
    "isv.missing-method": "缺少方法名参数",
    "isv.missing-signature": "缺少签名参数",
    "isv.missing-signature-type": "缺少签名类型参数",
    "isv.missing-timestamp": "缺少时间戳参数",
    "isv.missing-version": "缺少版本参数",
    "isv.invalid-app-id": "无效的AppID参数",
    "isv.invalid-method": "不存在的方法名",
    "isv.invalid-format": "无效的数据格式",
    "isv.invalid-charset": "字符集错误",
    "isv.invalid-signature-type": "无效的签名类型",
    "isv.invalid-timestamp": "非法的时间戳参数",
    "isv.invalid-signature": "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
    "isv.grant-type-invalid": "grant_type参数不正确",
    "isv.code-invalid": "授权码code无效",
    "isv.invalid-parameter": "参数无效",
    "TEMPLATE_NOT_EXIST": "模板不存在",
    "USER_NOT_EXIST": "用户不存在",
    "DATA_ILLEGAL": "模板数据不合法",
    "USER_NOT_SUBSCRIBED": "用户未订阅该模板消息",
}


class GatewayError(Exception):
    """A gateway `code` with an optional `sub_code` detail.

    Answered inside `<method>_response` when the code is 40004 (a method's business refusal,
    as Alipay does), else as `error_response`.
    """

    def __init__(self, code: str, sub_code: str | None = None, sub_msg: str | None = None):
        super().__init__(sub_code or code)
        self.code, self.sub_code = code, sub_code
        self.sub_msg = sub_msg or SUB_MSG.get(sub_code or "", "sandbox error")

    def payload(self) -> dict[str, str]:
        body = {"code": self.code, "msg": MSG.get(self.code, "Unknown Error")}
        if self.sub_code is not None:
            body |= {"sub_code": self.sub_code, "sub_msg": self.sub_msg}
        return body


def sign_content(params: Mapping[str, str]) -> str:
    """All params but `sign` and the empty ones, sorted by key, raw values joined as k=v&k=v."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def verify(content: str, sign_b64: str, key: RSAPublicKey) -> bool:
    try:
        signature = base64.b64decode(sign_b64, validate=True)
        key.verify(signature, content.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, InvalidSignature):
        return False
    return True


def platform_sign(text: str) -> str:
    key = config.alipay_platform_private_key()
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def signed_envelope(response_key: str, payload: Mapping[str, Any]) -> bytes:
    """`{"<response_key>":R,"sign":"S"}`, S signing the exact UTF-8 bytes of R as sent.

    Built as text rather than serialized as a whole so the signed R is byte for byte what
    the client sees; non-ASCII stays unescaped, as Alipay sends it.
    """
    r = msgspec.json.encode(payload).decode()
    return f'{{"{response_key}":{r},"sign":"{platform_sign(r)}"}}'.encode()
