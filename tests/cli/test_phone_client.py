"""The scripted phone finds medpay and the sandbox where `medpay dev` puts them: MEDPAY_HOST,
MEDPAY_PORT and MEDPAY_SANDBOX_PORT, from the environment over `./.env`; `--api` and `--sandbox`
override them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import Settings
from miniprogram_stub import client as phone
from tests.servers import ROOT, free_port, wait_until_up


@pytest.fixture
def medpay_web(settings: Settings) -> Iterator[int]:
    """`medpay web` on a port of its own, on the tests' database, Redis and sandbox."""
    port = free_port()
    env = {
        **os.environ,
        "MEDPAY_ENV": "test",
        "MEDPAY_PORT": str(port),
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": settings.redis.url,
        "MEDPAY_SANDBOX_PORT": str(settings.sandbox.port),
        "MEDPAY_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "web"], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health/ready", timeout=60)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


@pytest.mark.parametrize(
    ("env", "api", "sandbox"),
    [
        ({}, "http://127.0.0.1:8000", "http://127.0.0.1:8100"),
        (
            {"MEDPAY_PORT": "9001", "MEDPAY_SANDBOX_PORT": "9101"},
            "http://127.0.0.1:9001",
            "http://127.0.0.1:9101",
        ),
        ({"MEDPAY_HOST": "0.0.0.0", "MEDPAY_PORT": ""}, "http://127.0.0.1:8000", "http://127.0.0.1:8100"),  # noqa: S104
        ({"MEDPAY_HOST": "::"}, "http://127.0.0.1:8000", "http://127.0.0.1:8100"),
        ({"MEDPAY_HOST": "::1", "MEDPAY_PORT": "9001"}, "http://[::1]:9001", "http://127.0.0.1:8100"),
        ({"MEDPAY_HOST": "medpay.local"}, "http://medpay.local:8000", "http://127.0.0.1:8100"),
    ],
)
def test_the_defaults_follow_the_variables_medpay_dev_reads(env, api, sandbox) -> None:
    assert phone.default_urls(env) == (api, sandbox)


def test_the_phone_logs_in_where_the_environment_and_dotenv_say(
    medpay_web: int, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # The sandbox port only in .env; the API's port in both, the environment's winning.
    (tmp_path / ".env").write_text(
        f"MEDPAY_SANDBOX_PORT={settings.sandbox.port}\nMEDPAY_PORT={free_port()}\n"
    )
    monkeypatch.chdir(tmp_path)
    for variable in ("MEDPAY_HOST", "MEDPAY_SANDBOX_PORT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MEDPAY_PORT", str(medpay_web))

    assert phone.main(["login", "--channel", "wechat", "--user", "phone-env"]) == 0
    shown = capsys.readouterr().out
    assert "login: HTTP 200" in shown
    assert "me: HTTP 200" in shown


def test_the_flags_override_the_environment(
    medpay_web: int, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MEDPAY_PORT", str(medpay_web))
    monkeypatch.setenv("MEDPAY_SANDBOX_PORT", str(settings.sandbox.port))
    nowhere = f"http://127.0.0.1:{free_port()}"

    assert phone.main(["login", "--channel", "wechat", "--user", "phone-flag", "--api", nowhere]) == 2
    assert f"POST {nowhere}/api/v1/auth/login" in capsys.readouterr().err

    assert phone.main(["login", "--channel", "alipay", "--user", "phone-flag", "--sandbox", nowhere]) == 2
    assert f"POST {nowhere}/alipay/_sandbox/login" in capsys.readouterr().err
