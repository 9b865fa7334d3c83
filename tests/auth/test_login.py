"""Mini-program login through the sandbox WeChat and Alipay platforms, over real HTTP."""

import logging

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from backend.auth.tables import User
from backend.partners.alipay import AlipayClient
from backend.platform.errors import AppError
from backend.settings import Settings
from tests.helpers import Client, bearer, inject_fault, login, login_code, sandbox_calls


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_login_issues_tokens_and_me_names_the_user(
    client: Client, sandbox_http, settings: Settings, channel: str
) -> None:
    tokens = await login(client, sandbox_http, settings, channel, "alice")

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    me = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    user = me.json()
    assert user["channel"] == channel
    app_id = settings.wechat.appid if channel == "wechat" else settings.alipay.app_id
    assert user["app_id"] == app_id
    assert "session_key" not in str(tokens) and "session_key" not in me.text


async def test_the_same_phone_user_logs_in_to_the_same_account_and_keeps_the_unionid(
    client: Client, sandbox_http, settings: Settings
) -> None:
    first = await login(client, sandbox_http, settings, "wechat", "bob")
    again = await login(client, sandbox_http, settings, "wechat", "bob")
    other = await login(client, sandbox_http, settings, "wechat", "carol")

    def me(tokens):
        return client.get("/api/v1/me", headers=bearer(tokens["access_token"]))

    bob, bob_again, carol = [(await me(t)).json() for t in (first, again, other)]
    assert bob["id"] == bob_again["id"] != carol["id"]
    assert bob["unionid"] and bob["unionid"].startswith("u")


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_a_code_works_once(client: Client, sandbox_http, settings: Settings, channel) -> None:
    code = await login_code(sandbox_http, settings, channel, "dave")
    first = await client.post("/api/v1/auth/login", json={"channel": channel, "code": code})
    second = await client.post("/api/v1/auth/login", json={"channel": channel, "code": code})

    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["error"]["code"] == "LOGIN_CODE_INVALID"
    assert second.json()["error"]["detail"]["field"] == "code"


async def test_an_unknown_wechat_code_is_refused_with_the_platform_code(client: Client) -> None:
    answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": "nope"})

    assert answer.status_code == 401
    assert answer.json()["error"]["detail"]["platform_code"] == 40029


async def test_wechat_busy_is_retried_and_the_login_succeeds(
    client: Client, sandbox_http, settings: Settings
) -> None:
    await inject_fault(sandbox_http, partner="wechat", api="jscode2session", errcode=-1, times=2)
    code = await login_code(sandbox_http, settings, "wechat", "erin")

    answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": code})

    assert answer.status_code == 200
    calls = await sandbox_calls(sandbox_http, "wechat", "jscode2session")
    assert [call["outcome"] for call in calls] == ["-1", "-1", "ok"]


async def test_wechat_busy_that_persists_is_a_503_and_nothing_is_written(
    client: Client, sandbox_http, settings: Settings
) -> None:
    await inject_fault(sandbox_http, partner="wechat", api="jscode2session", errcode=-1, times=5)
    code = await login_code(sandbox_http, settings, "wechat", "frank")

    answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": code})

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "PARTNER_UNAVAILABLE"
    assert answer.headers["retry-after"]
    calls = await sandbox_calls(sandbox_http, "wechat", "jscode2session")
    assert len(calls) == settings.partner_http.retries + 1
    assert await User.count() == 0


async def test_wechat_rate_limit_is_not_retried(client: Client, sandbox_http, settings) -> None:
    await inject_fault(sandbox_http, partner="wechat", api="jscode2session", errcode=45011, times=1)
    code = await login_code(sandbox_http, settings, "wechat", "gina")

    answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": code})

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "PARTNER_RATE_LIMITED"
    assert answer.headers["retry-after"] == "60"
    assert len(await sandbox_calls(sandbox_http, "wechat", "jscode2session")) == 1


async def test_wechat_5xx_and_timeouts_are_retried(client: Client, sandbox_http, settings) -> None:
    await inject_fault(sandbox_http, partner="wechat", api="jscode2session", http_status=502, times=1)
    # A slow answer that the client gives up on (the platform fails it too, so the code stays good).
    await inject_fault(
        sandbox_http, partner="wechat", api="jscode2session", delay_ms=2500, errcode=-1, times=1
    )
    code = await login_code(sandbox_http, settings, "wechat", "hank")

    answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": code})

    assert answer.status_code == 200
    outcomes = [call["outcome"] for call in await sandbox_calls(sandbox_http, "wechat", "jscode2session")]
    # The call that timed out is recorded only when the sandbox finally answers it.
    assert outcomes[0] == "http:502" and "ok" in outcomes


async def test_alipay_busy_is_retried(client: Client, sandbox_http, settings: Settings) -> None:
    await inject_fault(
        sandbox_http,
        partner="alipay",
        api="alipay.system.oauth.token",
        code="20000",
        sub_code="isp.unknow-error",
        times=1,
    )
    code = await login_code(sandbox_http, settings, "alipay", "ivy")

    answer = await client.post("/api/v1/auth/login", json={"channel": "alipay", "code": code})

    assert answer.status_code == 200
    calls = await sandbox_calls(sandbox_http, "alipay", "alipay.system.oauth.token")
    assert [call["outcome"] for call in calls] == ["isp.unknow-error", "ok"]


async def test_an_alipay_answer_with_a_bad_signature_is_refused(
    sandbox_http, settings: Settings, tmp_path
) -> None:
    # Verify the platform's answers with someone else's public key: every signature must fail.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    key_file = tmp_path / "stranger.pem"
    key_file.write_bytes(stranger.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    wrong = msgspec.structs.replace(settings.alipay, platform_public_key_file=key_file)
    code = await login_code(sandbox_http, settings, "alipay", "jack")
    async with httpx.AsyncClient() as http:
        alipay = AlipayClient(wrong, settings.partner_http, http)
        with pytest.raises(AppError) as refused:
            await alipay.oauth_token(code)
    assert refused.value.code == "PARTNER_SIGNATURE_INVALID"


async def test_logs_never_carry_the_session_key_or_the_code(
    client: Client, sandbox_http, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    code = await login_code(sandbox_http, settings, "wechat", "kate")
    with caplog.at_level(logging.DEBUG):
        answer = await client.post("/api/v1/auth/login", json={"channel": "wechat", "code": code})
    assert answer.status_code == 200
    logged = " ".join(str(record.msg) for record in caplog.records)
    assert "patient logged in" in logged
    assert code not in logged and "session_key" not in logged
