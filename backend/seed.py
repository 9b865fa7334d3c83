"""Demo data for development and the sandbox: institutions, partner clients, policies. Idempotent."""

from __future__ import annotations

from backend.billing import policy
from backend.hospitals.service import ensure_institution
from backend.oauth.service import seed_client

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
        ["bills:write", "bookings:write"],
        "H33010001",
        "demo-his",
        "demo-his-secret",
    ),
    (
        "terminal",
        "杭州市第一人民医院 门诊自助机",
        ["ecert:decode"],
        "H33010001",
        "demo-terminal",
        "demo-terminal-secret",
    ),
    (
        "terminal",
        "上海市第六人民医院 收费窗口",
        ["ecert:decode"],
        "H31010001",
        "demo-terminal-sh",
        "demo-terminal-sh-secret",
    ),
    ("bank", "示范银行 信用就医", ["credit:callback"], None, "demo-bank", "demo-bank-secret"),
]


async def seed() -> list[str]:
    """Create what is missing; return what was created."""
    created = []
    for code, name, level, region in INSTITUTIONS:
        if await ensure_institution(code, name, level, region):
            created.append(f"institution {code}")
    for kind, name, scopes, institution, client_id, secret in PARTNER_CLIENTS:
        if await seed_client(kind, name, scopes, institution, client_id, secret):
            created.append(f"partner client {client_id}")
    created.append(f"{await policy.load()} settlement policies (inserted or updated)")
    return created
