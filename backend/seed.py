"""Demo data for development and the sandbox: institutions, partner clients, policies. Idempotent."""

from __future__ import annotations

from backend.billing import policy
from backend.credit import banks
from backend.credit.banks import ProductSpec
from backend.hospitals.service import ensure_institution
from backend.oauth.service import seed_client
from backend.settings import get_settings

INSTITUTIONS = [
    ("H33010001", "杭州市第一人民医院", 3, "330100"),
    ("H33010002", "杭州市西湖区社区卫生服务中心", 1, "330100"),
    ("H31010001", "上海市第六人民医院", 3, "310100"),
]

# Demo credentials, printed by `medpay dev`; `medpay seed` refuses to run in production.
PARTNER_CLIENTS = [
    (
        "hospital",
        "杭州市第一人民医院 HIS",
        ["bills:write", "bookings:write", "bookings:check-in"],
        "H33010001",
        "demo-his",
        "demo-his-secret",
    ),
    (
        "terminal",
        "杭州市第一人民医院 门诊自助机",
        ["ecert:decode", "bookings:check-in"],
        "H33010001",
        "demo-terminal",
        "demo-terminal-secret",
    ),
    (
        "kiosk",
        "杭州市第一人民医院 门诊大厅刷脸缴费机",
        ["ecert:decode", "kiosk:pay"],
        "H33010001",
        "demo-kiosk",
        "demo-kiosk-secret",
    ),
    (
        "terminal",
        "上海市第六人民医院 收费窗口",
        ["ecert:decode"],
        "H31010001",
        "demo-terminal-sh",
        "demo-terminal-sh-secret",
    ),
]

# The sandbox bank (`python -m miniprogram_stub.bank`): its current callback key, and the first
# city pilot's product: 5,000 yuan, 49 days interest-free, then 0.05% a day.
DEMO_BANK_KEYS = {"k1": "whpk_/4/wbFoQ1jCG9h5oghTcVlnZgIugz7vDmOeUPqkbzuE="}
DEMO_PRODUCT = ProductSpec(
    code="XYJY-HZ",
    name="信用就医·先诊疗后付费",
    terms_version="2026-12",
    terms_text=(
        "示范银行信用就医服务协议（2026-12版）：额度用于支付医保结算后的个人自付部分，"
        "自放款之日起49天内免息，逾期后按日利率0.05%计息；逾期期间额度冻结。"
    ),
)


async def seed(bank_api_base: str | None = None) -> list[str]:
    """Create what is missing; return what was created. The demo bank's API is the sandbox bank
    at `MEDPAY_SANDBOX_BANK_PORT` unless `bank_api_base` names it."""
    created = []
    for code, name, level, region in INSTITUTIONS:
        if await ensure_institution(code, name, level, region):
            created.append(f"institution {code}")
    for kind, name, scopes, institution, client_id, secret in PARTNER_CLIENTS:
        if await seed_client(kind, name, scopes, institution, client_id, secret):
            created.append(f"partner client {client_id}")
    api_base = bank_api_base or f"http://127.0.0.1:{get_settings().sandbox.bank_port}"
    if await banks.create_bank(
        "demo-bank", "示范银行", api_base, DEMO_BANK_KEYS, [DEMO_PRODUCT], "demo-bank", "demo-bank-secret"
    ):
        created.append("bank demo-bank")
    created.append(f"{await policy.load()} settlement policies (inserted or updated)")
    return created
