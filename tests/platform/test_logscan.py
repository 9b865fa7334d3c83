"""The session's log scan (tests/logscan.py) catches each kind of secret, passes clean lines, and
sees the lines of the test process and of the processes the tests start."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from pathlib import Path

import pytest
import structlog

from backend.platform.runtime import Runtime
from backend.settings import DEV_BANK_REQUEST_KEY, DEV_VAULT_KEYS, Settings
from tests import servers
from tests.identities import resident_id
from tests.logscan import PLUGIN, LogScan, Scanner, luhn_valid, people, scan_lines, secret_values

PEM = (Path(__file__).resolve().parents[2] / "backend/devkeys/jwt-signing.pem").read_text()


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(secret_values(), people())


def card(prefix: str, length: int) -> str:
    """A number of `length` digits from `prefix` whose last digit passes Luhn."""
    body = prefix + "0" * (length - len(prefix) - 1)
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def caught(scanner: Scanner, line: str) -> set[str]:
    return {rule for rule, _ in scan_lines([line], scanner)}


async def test_each_kind_of_secret_is_caught_and_masked(
    scanner: Scanner, settings: Settings, runtime: Runtime
) -> None:
    jwt = runtime.tokens.sign({"sub": "1"}, 60, "medpay:patient")
    session_key = base64.b64encode(secrets.token_bytes(16)).decode()
    pem_body = PEM.splitlines()[1]
    lines = {
        "resident ID number": [f"bound id_number={resident_id()}", "id='11010519491231002X' x"],
        "person's name": ["name='李娜'", "holder=测试林一 ok", "测试12号 bound", json.dumps({"n": "张伟"})],
        "JWT": [f"authorization header {jwt}"],
        "opaque token (token_urlsafe(32))": [f"issued {secrets.token_urlsafe(32)} to the phone"],
        "a secret named by its key": [
            "refresh_token='abc123def456'",
            '{"client_secret": "s3cr3t-value"}',
            f"session_key={session_key}",
            "password=hunter2hunter2",
            "GET /sns/jscode2session?appid=wx1&js_code=0a1b2c3d4e&grant_type=authorization_code",
        ],
        "private key": [PEM.splitlines()[0]],
        "secret value: private key jwt-signing.pem": [f"key material {pem_body}"],
        "secret value: MEDPAY_VAULT_KEYS": [f"keys={DEV_VAULT_KEYS.split(':', 1)[1]!r}"],
        "secret value: MEDPAY_ECERT_DATA_KEY": [f"aes {settings.ecert.data_key}"],
        "secret value: MEDPAY_WECHATPAY_APIV3_KEY": [f"decrypting with {settings.wechatpay.apiv3_key}"],
        "secret value: MEDPAY_WECHAT_SECRET": [f"url=...&secret={settings.wechat.secret}&x"],
        "Standard Webhooks secret": [f"signing with {DEV_BANK_REQUEST_KEY}"],
        "card or account number": [
            f"account {card('622202', 19)} linked",
            f"card={card('4111', 16)}",
            "card 4111 1111 1111 1111 typed",
        ],
        "WeChat session_key": [f"got {session_key} back"],
        "password in a URL": ["postgresql://medpay:pa55word@db.internal:5432/medpay"],
    }
    for rule, examples in lines.items():
        for line in examples:
            assert rule in caught(scanner, line), (rule, line)
    secret_parts = {  # the secret, in its line
        "李娜": "name=李娜 bound",
        "测试林一": "holder 测试林一",
        jwt.split(".")[1]: f"Bearer {jwt}",
        settings.wechatpay.apiv3_key: f"key {settings.wechatpay.apiv3_key}",
        pem_body: f"pem {pem_body}",
        session_key: f"got {session_key}",
        "pa55word": "dsn postgresql://medpay:pa55word@db/medpay",
        (number := resident_id(sequence=7)): f"id_number {number}",
    }
    shown = [masked for _, masked in scan_lines(secret_parts.values(), scanner)]
    assert len(shown) >= len(secret_parts)
    for part in secret_parts:
        assert all(part not in line for line in shown), part


@pytest.mark.parametrize(
    "line",
    [
        "2026-12-01T23:06:02.888687Z [info     ] patient logged in [backend.auth.service] channel=wechat "
        "correlation_id=b3797b9586734cfa95be6cb2f4c62fe6 new_user=True user_id=1",
        "bill created bill_id=6f1c2f9e-1d7b-4c1a-9b1e-0123456789ab total_fen=12345 institution=H001",
        "out_trade_no=MP1234567890123456789012345678 bill_no=B202612011234567890",
        "trade_no=2026120122123456789012345678 buyer_id=2088000000000001 app_id=2021000000000001",
        "id 330106199007212463 (a wrong check digit) and 330106199013212462 (no such month)",
        "ids=[1716123456789012345, 1234567890123456] elapsed_ns=1764630362888687123",  # Luhn says no
        "name=张* masked=欧**娜 id_number=3301**********2462 reason='交易不存在' item=血常规",
        "refresh token reuse: family revoked user_id=3 secret=*** password=None",
        "nonce=5A3F0C9E1B7D2E4F6A8B9C0D1E2F3A4B msg_id=msg_0123456789abcdef01234567",
    ],
)
def test_a_clean_line_passes(scanner: Scanner, line: str) -> None:
    assert scan_lines([line], scanner) == []


def test_the_real_secret_values_are_searched_for(settings: Settings) -> None:
    values = secret_values()
    for value in (
        settings.wechat.secret,
        settings.wechatpay.apiv3_key,
        settings.ecert.app_secret,
        settings.ecert.data_key,
        settings.vault.digest_key,
        settings.credit.request_signing_key,
        DEV_VAULT_KEYS.split(":", 1)[1],
    ):
        assert value in values
    assert sum("private key" in what for what in values.values()) >= 5 * 20  # 5+ keys, each many lines
    assert {"张伟", "李娜", "张三"} <= people()


def test_the_test_process_lines_reach_the_scan(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin(PLUGIN)
    assert isinstance(plugin, LogScan)
    marker = f"logscan self-test {secrets.token_hex(4)}"
    before = len(plugin.lines)

    structlog.get_logger("backend.tests").warning(marker, bill_id="b1")

    rendered = [text for _, text in plugin.lines[before:] if marker in text]
    assert len(rendered) == 1 and "bill_id=b1" in rendered[0] and "backend.tests" in rendered[0]


def test_a_worker_process_writes_where_the_scan_reads(settings: Settings) -> None:
    assert servers.LOG_DIR is not None
    before = len(servers.LOG_FILES)
    worker = servers.arq_worker(settings)
    try:
        log = servers.LOG_FILES[before]
        assert log.parent == servers.LOG_DIR
        deadline = time.monotonic() + 30
        while "Starting worker" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Starting worker" in log.read_text()
    finally:
        worker.terminate()
        worker.wait(10)


def test_the_products_lines_show_no_local_variables_nor_secret_keys(request: pytest.FixtureRequest) -> None:
    """A library's exception (arq's failed job) is a plain traceback: rich's would show each frame's
    locals, a job's `ctx` and the settings in it among them. A secret passed by its key is redacted."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN)
    assert isinstance(plugin, LogScan)
    hidden = f"local-{secrets.token_hex(6)}"
    before = len(plugin.lines)

    def job(ctx: dict[str, str]) -> None:
        raise TimeoutError(ctx["name"])

    try:
        job({"name": "the job", "settings": hidden})
    except TimeoutError:
        logging.getLogger("arq.worker").exception("  0.30s ! outbox:1:job failed, TimeoutError")
    structlog.get_logger("backend.tests").warning("handed over", refresh_token=hidden, client_secret=hidden)

    lines = "\n".join(text for _, text in plugin.lines[before:])
    assert "Traceback (most recent call last)" in lines and 'raise TimeoutError(ctx["name"])' in lines
    assert "handed over" in lines and "refresh_token=[redacted]" in lines
    assert hidden not in lines
