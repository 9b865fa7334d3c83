"""The sandbox's registered apps and keys; each constant can be overridden by an env variable."""

import os
from functools import cache
from importlib.resources import files

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

WECHAT_APPID = os.environ.get("SANDBOX_WECHAT_APPID", "wx5a1d0c0ffee00001")
# A sandbox-only secret, published on purpose so the backend's dev settings can match it.
WECHAT_SECRET = os.environ.get("SANDBOX_WECHAT_SECRET", "sandbox-wechat-secret")

ALIPAY_APP_ID = os.environ.get("SANDBOX_ALIPAY_APP_ID", "2021000000000001")
# Alipay refuses requests whose timestamp is further than this from its clock.
ALIPAY_TIMESTAMP_WINDOW_S = 15 * 60

# How long a login code from the phone side stays exchangeable (tests may shorten it).
CODE_TTL_S = float(os.environ.get("SANDBOX_CODE_TTL_S", "300"))

_KEYS = files("miniprogram_stub") / "keys"


@cache
def alipay_app_public_key() -> RSAPublicKey:
    """The registered app's public key: verifies the backend's request signatures."""
    key = load_pem_public_key((_KEYS / "alipay-app-public.pem").read_bytes())
    if not isinstance(key, RSAPublicKey):
        raise TypeError("alipay-app-public.pem must hold an RSA public key")
    return key


@cache
def alipay_platform_private_key() -> RSAPrivateKey:
    """The platform's private key: signs every gateway response."""
    key = load_pem_private_key((_KEYS / "alipay-platform-private.pem").read_bytes(), None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError("alipay-platform-private.pem must hold an RSA private key")
    return key
