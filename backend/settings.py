"""Settings, grouped by concern and read once from the environment (and an optional `.env`)."""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dotenv import dotenv_values

from backend.partners import webhooks

DEV_KEYS = Path(__file__).parent / "devkeys"
SANDBOX_PORT = 8100
SANDBOX = f"http://127.0.0.1:{SANDBOX_PORT}"
# The sandbox partners' app (see miniprogram_stub/sandbox/config.py); refused in production.
SANDBOX_WECHAT_APPID = "wx5a1d0c0ffee00001"
SANDBOX_WECHAT_SECRET = "sandbox-wechat-secret"
SANDBOX_ALIPAY_APP_ID = "2021000000000001"
SANDBOX_ALIPAY_SELLER_ID = "2088000000000001"
SANDBOX_WECHATPAY_MCHID = "1900000001"
SANDBOX_WECHATPAY_MERCHANT_SERIAL_NO = "3775B6A45ACD588826D15E583A95F5DD34A1D1E0"
SANDBOX_WECHATPAY_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000000012026112200000001"
SANDBOX_WECHATPAY_APIV3_KEY = "medpaySandboxApiV3Key00000000001"
SANDBOX_ECERT_APP_ID = "medpay-sandbox-ecert"
SANDBOX_ECERT_APP_SECRET = "sandbox-ecert-app-secret-0001"
SANDBOX_ECERT_DATA_KEY = "HZoBlusRr6ET1WTtO/jiSXlX6FiB4jVFALXq262G1fc="
# Development keys of our own; production refuses them.
DEV_VAULT_KEYS = "dev1:Q3DY/u5iCwRFiCxjPwALCgkPz4cEvZ0Rd50Yt38PKOM="
DEV_DIGEST_KEY = "L/VDag0qk4ycQxcZKYiLilPFOPQBDpkjPjYSNmk7Isw="
DEV_QR_KEY = "aci9nQ+R2N+QLQiMh8e04ThHHEpg/Dz5ES8+7Q9KNs8="
# Signs our requests to banks (Standard Webhooks `whsk_`); the sandbox bank knows its public half.
DEV_BANK_REQUEST_KEY = "whsk_STcxG9RxCd1kmQfYPNJ5yITFbM+vaYqKVTVPZlSeL8w="
SANDBOX_BANK_PORT = 8101


class SettingsError(Exception):
    """A variable is missing or malformed; the message names it."""


class Group(msgspec.Struct, kw_only=True):
    """A group of settings; each field `x` is read from `<prefix>X`."""

    prefix: ClassVar[str] = "MEDPAY_"
    names: ClassVar[dict[str, str]] = {}  # field -> variable, where not `<prefix>FIELD`

    @classmethod
    def variable(cls, field: str) -> str:
        return cls.names.get(field, cls.prefix + field.upper())

    @classmethod
    def load(cls, env: dict[str, str]) -> Any:
        raw = {
            field: env[cls.variable(field)]
            for field in cls.__struct_fields__
            if env.get(cls.variable(field), "") != ""
        }
        try:
            return msgspec.convert(raw, type=cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            match = re.search(r"at `\$\.(\w+)`", str(exc))
            if not match:
                raise SettingsError(f"{cls.__name__}: {exc}") from None
            name = cls.variable(match.group(1))
            reason = str(exc).split(" - at ")[0].replace("got `str`", "got this text")
            raise SettingsError(f"{name}={env[name]!r}: {reason}") from None


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


class AppSettings(Group):
    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 1
    public_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    var_dir: Path = Path("var")

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class DatabaseSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_DB_"
    names: ClassVar[dict[str, str]] = {"url": "DATABASE_URL"}
    url: str = ""  # empty: an embedded PostgreSQL under var/
    pool_min: int = 2
    pool_max: int = 10


class RedisSettings(Group):
    names: ClassVar[dict[str, str]] = {"url": "REDIS_URL"}
    url: str = ""  # empty: an embedded Redis-protocol server under var/


class AuthSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_AUTH_"
    issuer: str = "medpay"
    signing_key_file: Path = DEV_KEYS / "jwt-signing.pem"
    # Public keys of retired signing keys, still accepted until their tokens expire.
    previous_public_keys: str = ""
    access_ttl_seconds: int = 900
    refresh_ttl_days: int = 30
    partner_token_ttl_seconds: int = 900


class WechatSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_WECHAT_"
    api_base: str = f"{SANDBOX}/wechat"
    appid: str = SANDBOX_WECHAT_APPID
    secret: str = SANDBOX_WECHAT_SECRET


class AlipaySettings(Group):
    prefix: ClassVar[str] = "MEDPAY_ALIPAY_"
    gateway: str = f"{SANDBOX}/alipay/gateway.do"
    app_id: str = SANDBOX_ALIPAY_APP_ID
    app_private_key_file: Path = DEV_KEYS / "alipay-app-private.pem"
    platform_public_key_file: Path = DEV_KEYS / "alipay-platform-public.pem"
    # The merchant's Alipay user id (2088...): a trade notification for another seller is refused.
    seller_id: str = SANDBOX_ALIPAY_SELLER_ID


class WechatPaySettings(Group):
    """WeChat Pay API v3 (JSAPI and medical-insurance mixed payment); the appid is `wechat.appid`."""

    prefix: ClassVar[str] = "MEDPAY_WECHATPAY_"
    api_base: str = f"{SANDBOX}/wechatpay"
    mchid: str = SANDBOX_WECHATPAY_MCHID
    merchant_private_key_file: Path = DEV_KEYS / "wechatpay-merchant-private.pem"
    merchant_serial_no: str = SANDBOX_WECHATPAY_MERCHANT_SERIAL_NO  # of the merchant API certificate
    platform_public_key_file: Path = DEV_KEYS / "wechatpay-platform-public.pem"
    platform_public_key_id: str = SANDBOX_WECHATPAY_PUBLIC_KEY_ID  # `Wechatpay-Serial` of its signatures
    apiv3_key: str = SANDBOX_WECHATPAY_APIV3_KEY  # 32 characters: decrypts notifications


class EcertSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_ECERT_"
    api_base: str = f"{SANDBOX}/ecert"
    app_id: str = SANDBOX_ECERT_APP_ID
    app_secret: str = SANDBOX_ECERT_APP_SECRET
    data_key: str = SANDBOX_ECERT_DATA_KEY  # base64 of the 32-byte AES key the platform gave us
    qr_key: str = DEV_QR_KEY  # base64, signs QR codes
    qr_ttl_seconds: int = 60
    visit_ttl_seconds: int = 4 * 3600
    bind_failures_allowed: int = 5
    bind_failure_window_seconds: int = 3600


class VaultSettings(Group):
    """Keys for personal data at rest: AES-256-GCM by key id, and a keyed digest for lookups."""

    prefix: ClassVar[str] = "MEDPAY_VAULT_"
    keys: str = DEV_VAULT_KEYS  # "id:base64key,id:base64key": the first encrypts, all decrypt
    digest_key: str = DEV_DIGEST_KEY


class PartnerHttpSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_PARTNER_"
    timeout_seconds: float = 5.0
    retries: int = 2


class BillingSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_BILL_"
    ttl_seconds: int = 1800  # an unpaid bill closes this long after it was created
    # A payment still in progress this long is asked about with the channel's order query.
    payment_check_after_seconds: int = 180
    # A bill named by `cert_no` needs a visit of its patient at the institution this recently.
    visit_window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30


class CreditSettings(Group):
    """Credit lines at banks: our requests to them, their callbacks to us, reminders."""

    prefix: ClassVar[str] = "MEDPAY_CREDIT_"
    request_signing_key: str = DEV_BANK_REQUEST_KEY  # `whsk_...`: signs what we send banks
    # A callback's webhook-timestamp may be this far from our clock, either way.
    callback_tolerance_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 300
    # An event that cannot apply yet (a repayment before its disbursement) is retried with
    # backoff; after this long it is flagged for review instead.
    flag_waiting_after_seconds: Annotated[int, msgspec.Meta(ge=1)] = 3600
    # A retired bank key is still accepted this long, unless the operator says otherwise.
    key_grace_seconds: Annotated[int, msgspec.Meta(ge=0)] = 86400
    # A repayment left unpaid at the bank's cashier this long gives back what it held.
    repayment_hold_seconds: Annotated[int, msgspec.Meta(ge=60)] = 1800
    # Reminders are sent this many drawdowns per transaction.
    remind_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class BookingSettings(Group):
    """Appointments: how long a place is held unpaid, when booking opens and cancelling closes."""

    prefix: ClassVar[str] = "MEDPAY_BOOKING_"
    # An unpaid hold (its registration bill) lasts this long; a waitlist offer has its own window.
    hold_seconds: Annotated[int, msgspec.Meta(ge=120, le=86400)] = 600
    offer_seconds: Annotated[int, msgspec.Meta(ge=120, le=86400)] = 900
    # Sessions open for booking at 00:00 (Asia/Shanghai) this many days before their day.
    open_days: Annotated[int, msgspec.Meta(ge=0, le=90)] = 7
    # A confirmed appointment is cancelled (and refunded) up to this long before its session.
    cancel_cutoff_minutes: Annotated[int, msgspec.Meta(ge=0, le=10080)] = 120
    # A patient with this many no-shows in `no_show_window_days` may not book; 0: never barred.
    no_show_limit: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    no_show_window_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 90


class FamilySettings(Group):
    """Relatives: how many a holder may link, which relations, how long an invitation lasts."""

    prefix: ClassVar[str] = "MEDPAY_FAMILY_"
    max_relatives: Annotated[int, msgspec.Meta(ge=1, le=50)] = 6
    # Pooling regions (comma-separated, e.g. "330100,310100") whose policy adds siblings,
    # grandparents and grandchildren to spouse, parents and children.
    extended_regions: str = ""
    invitation_hours: Annotated[int, msgspec.Meta(ge=1, le=168)] = 24
    # Relatives checked with the e-certificate platform by proxy, per user and day, granted or not.
    proxy_checks_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class KioskSettings(Group):
    """Paying by face at a self-service kiosk: how sure the face must be, and how much it may pay."""

    prefix: ClassVar[str] = "MEDPAY_KIOSK_"
    # Above the platform's own floor (0.90): a face that pays must match more surely than one that
    # only opens a visit.
    min_face_score: Annotated[float, msgspec.Meta(ge=0.5, le=1.0)] = 0.95
    # What one face payment, and one person's face payments in a day (Beijing time), may take from
    # the patient's own money and their relatives' (the bill less the fund's part), in fen.
    max_payment_fen: Annotated[int, msgspec.Meta(ge=1)] = 50_000
    max_daily_fen: Annotated[int, msgspec.Meta(ge=1)] = 100_000


class WorkerSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_WORKER_"
    concurrency: int = 10
    poll_delay_seconds: Annotated[float, msgspec.Meta(ge=0.001, le=5)] = 0.05  # between polls of the queue
    # A job Redis lost (a crash, a failover) is enqueued again after this; one it still holds is
    # refused by arq, and one still running is held by its lease: a resend never runs it twice.
    outbox_redeliver_seconds: Annotated[int, msgspec.Meta(ge=5)] = 60


class DevSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_SANDBOX_"
    port: int = SANDBOX_PORT
    bank_port: int = SANDBOX_BANK_PORT  # the sandbox bank, its own process


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app: AppSettings
    database: DatabaseSettings
    redis: RedisSettings
    auth: AuthSettings
    wechat: WechatSettings
    alipay: AlipaySettings
    wechatpay: WechatPaySettings
    ecert: EcertSettings
    vault: VaultSettings
    partner_http: PartnerHttpSettings
    billing: BillingSettings
    credit: CreditSettings
    booking: BookingSettings
    family: FamilySettings
    kiosk: KioskSettings
    worker: WorkerSettings
    sandbox: DevSettings

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        if env is None:
            env = {k: v for k, v in dotenv_values(".env").items() if v is not None}
            env.update(os.environ)
        # Partner URLs default to the sandbox wherever `MEDPAY_SANDBOX_PORT` puts it.
        sandbox = f"http://127.0.0.1:{env.get('MEDPAY_SANDBOX_PORT') or SANDBOX_PORT}"
        env = {
            "MEDPAY_WECHAT_API_BASE": f"{sandbox}/wechat",
            "MEDPAY_ALIPAY_GATEWAY": f"{sandbox}/alipay/gateway.do",
            "MEDPAY_WECHATPAY_API_BASE": f"{sandbox}/wechatpay",
            "MEDPAY_ECERT_API_BASE": f"{sandbox}/ecert",
            **env,
        }
        settings = cls(**{f.name: f.type.load(env) for f in msgspec.structs.fields(cls)})
        _check_keys(settings)
        if settings.app.env == "production":
            refuse_sandbox_in_production(settings)
        return settings


def _check_keys(settings: Settings) -> None:
    """Symmetric keys are base64 of exactly 32 bytes; a typo must not become a weak key."""
    keys = [
        ("MEDPAY_ECERT_DATA_KEY", settings.ecert.data_key),
        ("MEDPAY_ECERT_QR_KEY", settings.ecert.qr_key),
        ("MEDPAY_VAULT_DIGEST_KEY", settings.vault.digest_key),
        *(("MEDPAY_VAULT_KEYS", entry.partition(":")[2]) for entry in settings.vault.keys.split(",")),
    ]
    for variable, value in keys:
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise SettingsError(f"{variable}: each key must be base64 of 32 random bytes")
    if any(not entry.partition(":")[0].strip() for entry in settings.vault.keys.split(",")):
        raise SettingsError("MEDPAY_VAULT_KEYS: each entry is `id:base64key`")
    try:
        webhooks.secret_key(settings.credit.request_signing_key)
    except ValueError as exc:
        raise SettingsError(
            f"MEDPAY_CREDIT_REQUEST_SIGNING_KEY: {exc} (whsk_ and 32 bytes of base64)"
        ) from None


def refuse_sandbox_in_production(settings: Settings) -> None:
    """Production must name real partners over HTTPS, real servers, and keys of its own."""
    problems = []
    # OAuth 2 is served over TLS only (authlib refuses a token endpoint whose URL is plain HTTP), and
    # the channels post their notifications to this URL.
    if urlsplit(settings.app.public_url).scheme != "https":
        problems.append("MEDPAY_PUBLIC_URL is not an https URL")
    urls = (("wechat", "api_base"), ("alipay", "gateway"), ("wechatpay", "api_base"), ("ecert", "api_base"))
    for group, field in urls:
        url = getattr(getattr(settings, group), field)
        if urlsplit(url).scheme != "https":
            problems.append(f"{type(getattr(settings, group)).variable(field)} is not an https URL")
    for value, sandbox, variable in (
        (settings.wechat.appid, SANDBOX_WECHAT_APPID, "MEDPAY_WECHAT_APPID"),
        (settings.wechat.secret, SANDBOX_WECHAT_SECRET, "MEDPAY_WECHAT_SECRET"),
        (settings.alipay.app_id, SANDBOX_ALIPAY_APP_ID, "MEDPAY_ALIPAY_APP_ID"),
        (settings.alipay.seller_id, SANDBOX_ALIPAY_SELLER_ID, "MEDPAY_ALIPAY_SELLER_ID"),
        (settings.wechatpay.mchid, SANDBOX_WECHATPAY_MCHID, "MEDPAY_WECHATPAY_MCHID"),
        (
            settings.wechatpay.merchant_serial_no,
            SANDBOX_WECHATPAY_MERCHANT_SERIAL_NO,
            "MEDPAY_WECHATPAY_MERCHANT_SERIAL_NO",
        ),
        (
            settings.wechatpay.platform_public_key_id,
            SANDBOX_WECHATPAY_PUBLIC_KEY_ID,
            "MEDPAY_WECHATPAY_PLATFORM_PUBLIC_KEY_ID",
        ),
        (settings.wechatpay.apiv3_key, SANDBOX_WECHATPAY_APIV3_KEY, "MEDPAY_WECHATPAY_APIV3_KEY"),
        (settings.ecert.app_id, SANDBOX_ECERT_APP_ID, "MEDPAY_ECERT_APP_ID"),
        (settings.ecert.app_secret, SANDBOX_ECERT_APP_SECRET, "MEDPAY_ECERT_APP_SECRET"),
        (settings.ecert.data_key, SANDBOX_ECERT_DATA_KEY, "MEDPAY_ECERT_DATA_KEY"),
        (settings.ecert.qr_key, DEV_QR_KEY, "MEDPAY_ECERT_QR_KEY"),
        (settings.vault.digest_key, DEV_DIGEST_KEY, "MEDPAY_VAULT_DIGEST_KEY"),
        (settings.credit.request_signing_key, DEV_BANK_REQUEST_KEY, "MEDPAY_CREDIT_REQUEST_SIGNING_KEY"),
    ):
        if value == sandbox:
            problems.append(f"{variable} is the sandbox's or a development value")
    if DEV_VAULT_KEYS.split(":", 1)[1] in settings.vault.keys:
        problems.append("MEDPAY_VAULT_KEYS holds the development key")
    dev_keys = {_public_der(path) for path in DEV_KEYS.glob("*.pem")}
    keys = [
        (settings.auth.signing_key_file, "MEDPAY_AUTH_SIGNING_KEY_FILE"),
        (settings.alipay.app_private_key_file, "MEDPAY_ALIPAY_APP_PRIVATE_KEY_FILE"),
        (settings.alipay.platform_public_key_file, "MEDPAY_ALIPAY_PLATFORM_PUBLIC_KEY_FILE"),
        (settings.wechatpay.merchant_private_key_file, "MEDPAY_WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"),
        (settings.wechatpay.platform_public_key_file, "MEDPAY_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE"),
        *(
            (Path(p.strip()), "MEDPAY_AUTH_PREVIOUS_PUBLIC_KEYS")
            for p in settings.auth.previous_public_keys.split(",")
            if p.strip()
        ),
    ]
    for path, variable in keys:
        der = _public_der(path) if path.is_file() else None
        if der is None or der in dev_keys:
            problems.append(f"{variable} is missing, unreadable or a development key")
    for url, variable in ((settings.database.url, "DATABASE_URL"), (settings.redis.url, "REDIS_URL")):
        if not url:
            problems.append(f"{variable} is not set (embedded servers are for development)")
    if problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))


def _public_der(path: Path) -> bytes | None:
    """The public half of a PEM key, as DER: the same key in any encoding compares equal."""
    pem = path.read_bytes()
    try:
        key: Any = (
            serialization.load_pem_private_key(pem, password=None).public_key()
            if b"PRIVATE KEY" in pem
            else serialization.load_pem_public_key(pem)
        )
    except (ValueError, TypeError):
        return None
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env()
