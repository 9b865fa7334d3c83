"""Settings: read once from the environment; a bad value or a sandbox in production stops the start."""

from pathlib import Path

import pytest

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


def test_production_refuses_a_copy_of_a_development_key(tmp_path: Path) -> None:
    copy = tmp_path / "signing.pem"
    copy.write_bytes((ROOT / "backend/devkeys/jwt-signing.pem").read_bytes())
    with pytest.raises(SettingsError, match="MEDPAY_AUTH_SIGNING_KEY_FILE"):
        Settings.from_env({"MEDPAY_ENV": "production", "MEDPAY_AUTH_SIGNING_KEY_FILE": str(copy)})


def test_the_command_stops_with_the_message(tmp_path: Path) -> None:
    done = medpay("migrate", env={"MEDPAY_PORT": "eighty"}, cwd=tmp_path)
    assert done.returncode != 0
    assert "MEDPAY_PORT='eighty'" in done.stderr
    assert "Traceback" not in done.stderr
