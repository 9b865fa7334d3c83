"""The sandbox's registered apps and keys; each constant can be overridden by an env variable."""

import base64
import os
from functools import cache
from importlib.resources import files

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from joserfc.jwk import ECKey

WECHAT_APPID = os.environ.get("SANDBOX_WECHAT_APPID", "wx5a1d0c0ffee00001")
# A sandbox-only secret, published on purpose so the backend's dev settings can match it.
WECHAT_SECRET = os.environ.get("SANDBOX_WECHAT_SECRET", "sandbox-wechat-secret")
# An access_token lives this long; a newer one retires the older ones this much later (as WeChat).
WECHAT_TOKEN_TTL_S = float(os.environ.get("SANDBOX_WECHAT_TOKEN_TTL_S", "7200"))
WECHAT_TOKEN_OVERLAP_S = float(os.environ.get("SANDBOX_WECHAT_TOKEN_OVERLAP_S", "300"))

ALIPAY_APP_ID = os.environ.get("SANDBOX_ALIPAY_APP_ID", "2021000000000001")
# The merchant's Alipay account (a 2088... user id): `seller_id` of its trades.
ALIPAY_SELLER_ID = os.environ.get("SANDBOX_ALIPAY_SELLER_ID", "2088000000000001")
# Alipay refuses requests whose timestamp is further than this from its clock.
ALIPAY_TIMESTAMP_WINDOW_S = 15 * 60

# WeChat Pay: the merchant, its API certificate's serial, the platform's public key id, and the
# APIv3 key (32 characters, published on purpose so the backend's dev settings can match it).
WECHATPAY_MCHID = os.environ.get("SANDBOX_WECHATPAY_MCHID", "1900000001")
WECHATPAY_MERCHANT_SERIAL_NO = os.environ.get(
    "SANDBOX_WECHATPAY_MERCHANT_SERIAL_NO", "3775B6A45ACD588826D15E583A95F5DD34A1D1E0"
)
WECHATPAY_PUBLIC_KEY_ID = os.environ.get(
    "SANDBOX_WECHATPAY_PUBLIC_KEY_ID", "PUB_KEY_ID_0119000000012026112200000001"
)
WECHATPAY_APIV3_KEY = os.environ.get("SANDBOX_WECHATPAY_APIV3_KEY", "medpaySandboxApiV3Key00000000001")
# WeChat Pay refuses a request signed further than this from its clock.
WECHATPAY_TIMESTAMP_WINDOW_S = 300
# A payment notification not acknowledged is sent again after each of these delays (the real
# platforms wait minutes to hours; the sandbox seconds).
NOTIFY_RETRY_DELAYS_S = tuple(
    float(s) for s in os.environ.get("SANDBOX_NOTIFY_RETRY_DELAYS_S", "1,2,4").split(",") if s.strip()
)

ECERT_APP_ID = os.environ.get("SANDBOX_ECERT_APP_ID", "medpay-sandbox-ecert")
ECERT_APP_SECRET = os.environ.get("SANDBOX_ECERT_APP_SECRET", "sandbox-ecert-app-secret-0001")
# base64 of the 32-byte AES-256-GCM key for `encrypt_data`, both directions.
ECERT_DATA_KEY = os.environ.get("SANDBOX_ECERT_DATA_KEY", "HZoBlusRr6ET1WTtO/jiSXlX6FiB4jVFALXq262G1fc=")
ECERT_TIMESTAMP_WINDOW_S = 300
ECERT_NONCE_TTL_S = 600
# A face assertion is fresh from 30 s ahead of the platform's clock to 120 s behind it.
FACE_MAX_AGE_S = 120
FACE_MAX_AHEAD_S = 30
FACE_MIN_SCORE = 0.90
FACE_JTI_TTL_S = 600
# A newborn is enrolled in resident insurance from its birth date up to this many days after it.
ECERT_NEWBORN_WINDOW_DAYS = int(os.environ.get("SANDBOX_ECERT_NEWBORN_WINDOW_DAYS", "365"))

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


@cache
def wechatpay_merchant_public_key() -> RSAPublicKey:
    """The merchant's API-certificate key: verifies the backend's request signatures and paySign."""
    key = load_pem_public_key((_KEYS / "wechatpay-merchant-public.pem").read_bytes())
    if not isinstance(key, RSAPublicKey):
        raise TypeError("wechatpay-merchant-public.pem must hold an RSA public key")
    return key


@cache
def wechatpay_platform_private_key() -> RSAPrivateKey:
    """WeChat Pay's own key: signs every answer and notification (`Wechatpay-Signature`)."""
    key = load_pem_private_key((_KEYS / "wechatpay-platform-private.pem").read_bytes(), None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError("wechatpay-platform-private.pem must hold an RSA private key")
    return key


@cache
def ecert_data_key() -> bytes:
    key = base64.b64decode(ECERT_DATA_KEY, validate=True)
    if len(key) != 32:
        raise ValueError("SANDBOX_ECERT_DATA_KEY must be base64 of 32 bytes")
    return key


@cache
def face_provider_private_key() -> ECKey:
    """The face provider's P-256 key: signs every assertion a scan hands out."""
    return ECKey.import_key((_KEYS / "face-provider-private.pem").read_bytes())


@cache
def face_provider_public_key() -> ECKey:
    """What a relying party (the e-certificate platform) verifies assertions with."""
    return ECKey.import_key((_KEYS / "face-provider-public.pem").read_bytes())


# The platform's own secret, keying what it derives from ID numbers (cert numbers, face `idd`).
PLATFORM_SECRET = os.environ.get("SANDBOX_ECERT_PLATFORM_SECRET", "sandbox-platform-only").encode()
