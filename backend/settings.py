"""Settings, grouped by concern and read once from the environment (and an optional `.env`)."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec
from dotenv import dotenv_values

DEV_KEYS = Path(__file__).parent / "devkeys"
SANDBOX = "http://127.0.0.1:8100"
SANDBOX_WECHAT_SECRET = "sandbox-wechat-secret"


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
            return msgspec.convert(raw, type=cls, strict=False)
        except msgspec.ValidationError as exc:
            match = re.search(r"at `\$\.(\w+)`", str(exc))
            if not match:
                raise SettingsError(f"{cls.__name__}: {exc}") from None
            name = cls.variable(match.group(1))
            reason = str(exc).split(" - at ")[0].replace("got `str`", "got this text")
            raise SettingsError(f"{name}={env[name]!r}: {reason}") from None


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
    appid: str = "wx5a1d0c0ffee00001"
    secret: str = SANDBOX_WECHAT_SECRET


class AlipaySettings(Group):
    prefix: ClassVar[str] = "MEDPAY_ALIPAY_"
    gateway: str = f"{SANDBOX}/alipay/gateway.do"
    app_id: str = "2021000000000001"
    app_private_key_file: Path = DEV_KEYS / "alipay-app-private.pem"
    platform_public_key_file: Path = DEV_KEYS / "alipay-platform-public.pem"


class PartnerHttpSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_PARTNER_"
    timeout_seconds: float = 5.0
    retries: int = 2


class WorkerSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_WORKER_"
    concurrency: int = 10
    outbox_redeliver_seconds: int = 300


class DevSettings(Group):
    prefix: ClassVar[str] = "MEDPAY_SANDBOX_"
    port: int = 8100


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    app: AppSettings
    database: DatabaseSettings
    redis: RedisSettings
    auth: AuthSettings
    wechat: WechatSettings
    alipay: AlipaySettings
    partner_http: PartnerHttpSettings
    worker: WorkerSettings
    sandbox: DevSettings

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        if env is None:
            env = {k: v for k, v in dotenv_values(".env").items() if v is not None}
            env.update(os.environ)
        settings = cls(**{f.name: f.type.load(env) for f in msgspec.structs.fields(cls)})
        if settings.app.env == "production":
            refuse_sandbox_in_production(settings)
        return settings


def refuse_sandbox_in_production(settings: Settings) -> None:
    """Production must name real partners, real servers and its own keys."""
    problems = []
    for group, field in (("wechat", "api_base"), ("alipay", "gateway")):
        url = getattr(getattr(settings, group), field)
        if urlsplit(url).hostname in {"127.0.0.1", "localhost", "::1"}:
            problems.append(f"{type(getattr(settings, group)).variable(field)} is a sandbox URL")
    dev_keys = {path.read_bytes().strip() for path in DEV_KEYS.glob("*.pem")}
    for group, field in (
        ("auth", "signing_key_file"),
        ("alipay", "app_private_key_file"),
        ("alipay", "platform_public_key_file"),
    ):
        path = Path(getattr(getattr(settings, group), field))
        if not path.is_file() or path.read_bytes().strip() in dev_keys:
            variable = type(getattr(settings, group)).variable(field)
            problems.append(f"{variable} is missing or a development key")
    if settings.wechat.secret == SANDBOX_WECHAT_SECRET:
        problems.append("MEDPAY_WECHAT_SECRET is the sandbox's")
    for url, variable in ((settings.database.url, "DATABASE_URL"), (settings.redis.url, "REDIS_URL")):
        if not url:
            problems.append(f"{variable} is not set (embedded servers are for development)")
    if problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env()
