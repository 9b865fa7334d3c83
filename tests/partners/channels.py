"""What the payment-channel tests share: an order, the sandbox's views of it, signing as the channel."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from backend.partners.channels import OrderRequest
from backend.platform.errors import AppError
from tests.servers import ROOT

Sandbox = httpx.AsyncClient
CHINA = ZoneInfo("Asia/Shanghai")
NOWHERE = "http://127.0.0.1:9/notify"  # the discard port: nothing listens, nothing leaves the machine
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ALIPAY_USER = "2088102146225135"


def load_key(name: str) -> Any:
    pem = (ROOT / name).read_bytes()
    if b"PRIVATE" in pem:
        return serialization.load_pem_private_key(pem, None)
    return serialization.load_pem_public_key(pem)


def sign_as(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def order(
    cash: int = 4_000, fund: int = 5_000, personal: int = 1_000, payer: str = OPENID, **changes: Any
) -> OrderRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "T" + uuid.uuid4().hex[:24],
        "payer_id": payer,
        "description": "杭州市第一人民医院-门诊缴费",
        "total_fen": cash + fund + personal,
        "cash_fen": cash,
        "fund_fen": fund,
        "personal_account_fen": personal,
        "order_type": "DIAG",
        "institution_code": "H33010001",
        "institution_name": "杭州市第一人民医院",
        "notify_url": NOWHERE,
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
    }
    return OrderRequest(**(fields | changes))


async def confirm(sandbox: Sandbox, channel: str, out_trade_no: str, **extra: Any) -> dict[str, Any]:
    answer = await sandbox.post(
        f"/_sandbox/pay/{channel}/confirm", json={"out_trade_no": out_trade_no, "deliver": False, **extra}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def sandbox_order(sandbox: Sandbox, channel: str, out_trade_no: str) -> dict[str, Any]:
    answer = await sandbox.get(f"/_sandbox/pay/{channel}/orders/{out_trade_no}")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def refused_code(exc: pytest.ExceptionInfo[AppError]) -> str:
    assert exc.value.code == "PARTNER_REJECTED"
    return str(exc.value.detail["platform_code"])


def form_body(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()
