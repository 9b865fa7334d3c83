"""Alipay's OpenAPI gateway: `alipay.system.oauth.token` through authlib's OAuth2 client.

Alipay's token endpoint is OAuth2 in spirit but not in form: the request carries the gateway's
common parameters and an RSA2 signature instead of client credentials, and the answer is wrapped
and signed. A client-auth method and a compliance hook bridge the two.
"""

from __future__ import annotations

import base64
import json
import warnings
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import httpx
import structlog
from authlib.deprecate import AuthlibDeprecationWarning  # installs a filter ours must follow
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

with warnings.catch_warnings():
    # authlib nudges towards the httpx2 fork when it is absent; httpx is what we ship.
    warnings.filterwarnings("ignore", "The httpx module", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from backend.partners.delivery import NOT_SENT_ERRORS, Delivery
from backend.partners.http import TransientPartnerError, rejected, signature_invalid, unusable, with_retries
from backend.platform.errors import AppError, Unauthorized
from backend.settings import AlipaySettings, PartnerHttpSettings

log = structlog.get_logger(__name__)

OAUTH_TOKEN = "alipay.system.oauth.token"
TEMPLATE_MESSAGE = "alipay.open.app.mini.templatemessage.send"
CHINA = ZoneInfo("Asia/Shanghai")
TRANSIENT_CODES = {"20000", "20001"}  # service unavailable, platform busy
INVALID_CODE = "isv.code-invalid"


def signing_content(params: dict[str, str]) -> str:
    """Alipay's string to sign: non-empty params except `sign`, sorted, `k=v` joined by `&`."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    signature = key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verify(key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), content.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def signed_answer(text: str, root: str) -> tuple[str, str]:
    """The exact text of the `root` object and the signature that covers it."""
    key = f'"{root}":'
    start = text.index(key) + len(key)
    end = text.rindex(',"sign"')
    return text[start:end], str(json.loads(text)["sign"])


class AlipayClient:
    partner = "alipay"

    def __init__(
        self, settings: AlipaySettings, http_settings: PartnerHttpSettings, http: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.http_settings = http_settings
        self.http = http
        private_key = serialization.load_pem_private_key(
            settings.app_private_key_file.read_bytes(), password=None
        )
        public_key = serialization.load_pem_public_key(settings.platform_public_key_file.read_bytes())
        assert isinstance(private_key, rsa.RSAPrivateKey)
        assert isinstance(public_key, rsa.RSAPublicKey)
        self._private_key = private_key
        self._platform_key = public_key

    def _oauth_client(self) -> AsyncOAuth2Client:
        # One per exchange: the client keeps the token it fetched, which is one user's.
        oauth = AsyncOAuth2Client(
            client_id=self.settings.app_id,
            token_endpoint=self.settings.gateway,
            token_endpoint_auth_method="alipay_rsa2",
            timeout=self.http_settings.timeout_seconds,
        )
        oauth.register_client_auth_method(("alipay_rsa2", self._sign_request))
        oauth.register_compliance_hook("access_token_response", self._unwrap_answer)
        return oauth

    async def oauth_token(self, auth_code: str) -> dict[str, Any]:
        """Exchange the mini-program's `my.getAuthCode` code for the user's ids."""

        async def exchange() -> dict[str, Any]:
            async with self._oauth_client() as oauth:
                token: dict[str, Any] = await oauth.fetch_token(
                    grant_type="authorization_code", code=auth_code
                )
                return token

        try:
            return await with_retries(self.http_settings, self.partner, exchange)
        except OAuthError as exc:
            if exc.error == INVALID_CODE:
                raise Unauthorized(
                    "the auth code is invalid, expired or already used; call my.getAuthCode again",
                    code="LOGIN_CODE_INVALID",
                    detail={"field": "code", "channel": "alipay", "platform_code": exc.error},
                ) from exc
            log.error("alipay rejected oauth token", sub_code=exc.error)
            raise rejected(self.partner, "Alipay refused the login", platform_code=exc.error) from exc

    def _sign_request(
        self, _auth: Any, method: str, uri: str, headers: dict[str, str], body: str | bytes
    ) -> tuple[str, dict[str, str], str]:
        text = body.decode() if isinstance(body, bytes) else body
        params = {k: v for k, v in parse_qsl(text) if k != "client_id"}
        headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
        return uri, headers, urlencode(self._signed(OAUTH_TOKEN, params))

    def _signed(self, method: str, params: dict[str, str]) -> dict[str, str]:
        """`params` with the gateway's common parameters and the RSA2 signature over all."""
        signed = {
            **params,
            "app_id": self.settings.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
        }
        signed["sign"] = rsa2_sign(self._private_key, signing_content(signed))
        return signed

    # For the other gateway clients (trades): the same signing and checking as here.
    def signed(self, method: str, params: dict[str, str]) -> dict[str, str]:
        return self._signed(method, params)

    def verified(self, response: httpx.Response, method: str) -> tuple[bool, dict[str, Any]]:
        return self._verified(response, method)

    def platform_signed(self, content: str, signature: str) -> bool:
        """Whether Alipay's key made this signature over this content."""
        return rsa2_verify(self._platform_key, content, signature)

    def _verified(self, response: httpx.Response, method: str) -> tuple[bool, dict[str, Any]]:
        """(is it the gateway's error_response, the answer object), its signature checked."""
        if response.status_code >= 500:
            raise TransientPartnerError(self.partner, f"HTTP {response.status_code}")
        text = response.text
        root = method.replace(".", "_") + "_response"
        if f'"{root}"' not in text:
            root = "error_response"
        try:
            content, signature = signed_answer(text, root)
            answer = json.loads(content)
        except (ValueError, KeyError) as exc:
            log.error("alipay answer unreadable", status=response.status_code)
            raise unusable(self.partner, "Alipay's answer could not be read") from exc
        if not rsa2_verify(self._platform_key, content, signature):
            raise signature_invalid(self.partner, "Alipay's answer failed signature verification")
        return root == "error_response", answer

    async def send_template_message(
        self, to_user_id: str, template_id: str, page: str, data: dict[str, Any]
    ) -> Delivery:
        """One attempt at a mini-program template message; the caller decides about retrying."""
        biz = {
            "to_user_id": to_user_id,
            "user_template_id": template_id,
            "page": page,
            "data": json.dumps(data, ensure_ascii=False),
        }
        params = self._signed(TEMPLATE_MESSAGE, {"biz_content": json.dumps(biz, ensure_ascii=False)})
        try:
            response = await self.http.post(self.settings.gateway, data=params)
        except httpx.TransportError as exc:
            name = type(exc).__name__
            return Delivery("retry" if name in NOT_SENT_ERRORS else "in_doubt", name)
        if response.status_code in (502, 504):  # a gateway's: the platform may have acted
            return Delivery("in_doubt", f"HTTP {response.status_code}")
        try:
            is_error, answer = self._verified(response, TEMPLATE_MESSAGE)
        except TransientPartnerError as exc:
            return Delivery("retry", exc.reason)
        except AppError as exc:  # an answer we cannot trust: it may say it was delivered
            return Delivery("in_doubt", exc.code)
        code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
        if not is_error and code == "10000":
            return Delivery("delivered")
        if code in TRANSIENT_CODES:
            return Delivery("retry", sub_code or code)
        if sub_code in ("USER_NOT_SUBSCRIBED", "USER_NOT_EXIST"):
            return Delivery("refused", sub_code)
        return Delivery("rejected", sub_code or code)

    def _unwrap_answer(self, response: httpx.Response) -> httpx.Response:
        """Verify the platform's signature and turn its answer into a standard token response."""
        is_error, answer = self._verified(response, OAUTH_TOKEN)
        if is_error:
            if answer.get("code") in TRANSIENT_CODES:
                raise TransientPartnerError(self.partner, answer.get("sub_code", answer["code"]))
            token = {
                "error": answer.get("sub_code") or answer.get("code"),
                "error_description": answer.get("sub_msg") or answer.get("msg"),
            }
        else:
            token = {**answer, "token_type": "Bearer"}
        return httpx.Response(200, json=token, request=response.request)
