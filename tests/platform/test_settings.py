"""Settings: read once from the environment; a bad value or a sandbox in production stops the start."""

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from backend.settings import Settings, SettingsError
from tests.servers import ROOT, medpay


def test_defaults_run_against_the_sandbox() -> None:
    settings = Settings.from_env({})
    assert settings.app.env == "development"
    assert settings.wechat.api_base == "http://127.0.0.1:8100/wechat"
    assert settings.auth.access_ttl_seconds == 900


def test_values_are_converted_and_grouped() -> None:
    settings = Settings.from_env(
        {
            "MEDPAY_PORT": "9000",
            "MEDPAY_AUTH_ACCESS_TTL_SECONDS": "600",
            "REDIS_URL": "redis://cache:6379/2",
            "MEDPAY_LOG_JSON": "true",
        }
    )
    assert settings.app.port == 9000
    assert settings.auth.access_ttl_seconds == 600
    assert settings.redis.url == "redis://cache:6379/2"
    assert settings.app.log_json is True


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MEDPAY_PORT": "eighty"}, "MEDPAY_PORT"),
        ({"MEDPAY_ENV": "staging"}, "MEDPAY_ENV"),
        ({"MEDPAY_AUTH_REFRESH_TTL_DAYS": "1.5"}, "MEDPAY_AUTH_REFRESH_TTL_DAYS"),
        ({"MEDPAY_LOG_JSON": "maybe"}, "MEDPAY_LOG_JSON"),
        ({"MEDPAY_BILL_VISIT_WINDOW_DAYS": "0"}, "MEDPAY_BILL_VISIT_WINDOW_DAYS"),
        ({"MEDPAY_BILL_VISIT_WINDOW_DAYS": "99999999999"}, "MEDPAY_BILL_VISIT_WINDOW_DAYS"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_production_refuses_sandbox_urls_and_development_keys() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"MEDPAY_ENV": "production"})
    message = str(refused.value)
    for variable in (
        "MEDPAY_WECHAT_API_BASE",
        "MEDPAY_ALIPAY_GATEWAY",
        "MEDPAY_WECHAT_SECRET",
        "MEDPAY_AUTH_SIGNING_KEY_FILE",
        "MEDPAY_ALIPAY_APP_PRIVATE_KEY_FILE",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert variable in message


def test_the_command_stops_with_the_message(tmp_path: Path) -> None:
    done = medpay("migrate", env={"MEDPAY_PORT": "eighty"}, cwd=tmp_path)
    assert done.returncode != 0
    assert "MEDPAY_PORT='eighty'" in done.stderr
    assert "Traceback" not in done.stderr


def _write_key(path: Path, key, private: bool = True) -> Path:
    if private:
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    else:
        path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


def production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MEDPAY_ENV": "production",
        "MEDPAY_PUBLIC_URL": "https://pay.example-hospital.cn",
        "DATABASE_URL": "postgresql://medpay@db/medpay",
        "REDIS_URL": "redis://cache:6379/0",
        "MEDPAY_WECHAT_API_BASE": "https://api.weixin.qq.com",
        "MEDPAY_WECHAT_APPID": "wx0123456789abcdef",
        "MEDPAY_WECHAT_SECRET": "a-real-secret",
        "MEDPAY_ALIPAY_GATEWAY": "https://openapi.alipay.com/gateway.do",
        "MEDPAY_ALIPAY_APP_ID": "2021009999999999",
        "MEDPAY_ECERT_API_BASE": "https://ecert.example.gov.cn/api",
        "MEDPAY_ECERT_APP_ID": "hospital-pay-0001",
        "MEDPAY_ECERT_APP_SECRET": "real-app-secret",
        "MEDPAY_ECERT_DATA_KEY": base64.b64encode(os.urandom(32)).decode(),
        "MEDPAY_ECERT_QR_KEY": base64.b64encode(os.urandom(32)).decode(),
        "MEDPAY_VAULT_KEYS": "k2026:" + base64.b64encode(os.urandom(32)).decode(),
        "MEDPAY_VAULT_DIGEST_KEY": base64.b64encode(os.urandom(32)).decode(),
        "MEDPAY_CREDIT_REQUEST_SIGNING_KEY": "whsk_" + base64.b64encode(os.urandom(32)).decode(),
        "MEDPAY_AUTH_SIGNING_KEY_FILE": str(
            _write_key(tmp_path / "jwt.pem", ec.generate_private_key(ec.SECP256R1()))
        ),
        "MEDPAY_ALIPAY_APP_PRIVATE_KEY_FILE": str(
            _write_key(tmp_path / "app.pem", rsa.generate_private_key(65537, 2048))
        ),
        "MEDPAY_ALIPAY_PLATFORM_PUBLIC_KEY_FILE": str(
            _write_key(tmp_path / "alipay.pem", rsa.generate_private_key(65537, 2048), private=False)
        ),
        "MEDPAY_ALIPAY_SELLER_ID": "2088123412341234",
        "MEDPAY_WECHATPAY_API_BASE": "https://api.mch.weixin.qq.com",
        "MEDPAY_WECHATPAY_MCHID": "1230000109",
        "MEDPAY_WECHATPAY_MERCHANT_SERIAL_NO": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "MEDPAY_WECHATPAY_PLATFORM_PUBLIC_KEY_ID": "PUB_KEY_ID_0112300001092025010100000001",
        "MEDPAY_WECHATPAY_APIV3_KEY": base64.b64encode(os.urandom(24)).decode(),
        "MEDPAY_WECHATPAY_MERCHANT_PRIVATE_KEY_FILE": str(
            _write_key(tmp_path / "merchant.pem", rsa.generate_private_key(65537, 2048))
        ),
        "MEDPAY_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE": str(
            _write_key(tmp_path / "wechatpay.pem", rsa.generate_private_key(65537, 2048), private=False)
        ),
    }


def test_production_starts_with_real_partners_servers_and_keys(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path))
    assert settings.app.env == "production"
    assert settings.auth.signing_key_file == tmp_path / "jwt.pem"


def test_production_refuses_a_development_key_in_another_encoding(tmp_path: Path) -> None:
    dev = serialization.load_pem_private_key((ROOT / "backend/devkeys/jwt-signing.pem").read_bytes(), None)
    reencoded = tmp_path / "dev-again.pem"
    reencoded.write_bytes(dev.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()))
    public = _write_key(tmp_path / "dev.pub.pem", dev, private=False)
    for variable, value in (
        ("MEDPAY_AUTH_SIGNING_KEY_FILE", reencoded),
        ("MEDPAY_AUTH_PREVIOUS_PUBLIC_KEYS", public),
    ):
        env = {**production_env(tmp_path), variable: str(value)}
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MEDPAY_WECHAT_API_BASE", "http://sandbox:8100/wechat"),
        ("MEDPAY_PUBLIC_URL", "http://pay.example-hospital.cn"),
        ("MEDPAY_PUBLIC_URL", None),
    ],
)
def test_production_refuses_plain_http_partners_and_its_own_url(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    env = {**production_env(tmp_path), variable: value}
    if value is None:
        del env[variable]
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MEDPAY_VAULT_DIGEST_KEY", "!!!"),
        ("MEDPAY_ECERT_QR_KEY", base64.b64encode(b"short").decode()),
        ("MEDPAY_VAULT_KEYS", "k1:" + base64.b64encode(os.urandom(16)).decode()),
        ("MEDPAY_VAULT_KEYS", ":" + base64.b64encode(os.urandom(32)).decode()),
        ("MEDPAY_CREDIT_REQUEST_SIGNING_KEY", "whpk_" + base64.b64encode(os.urandom(32)).decode()),
        ("MEDPAY_CREDIT_REQUEST_SIGNING_KEY", "whsk_" + base64.b64encode(os.urandom(16)).decode()),
    ],
    # Fixed ids: the random keys would name the tests differently in each xdist worker.
    ids=["digest-not-base64", "qr-short", "vault-short", "vault-unnamed", "signing-public", "signing-short"],
)
def test_a_weak_or_garbled_key_stops_the_start(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})
