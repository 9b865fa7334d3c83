"""Arrange steps for money tests: insured patients, a hospital's system, bills, payments, channels."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from backend.settings import Settings
from tests.helpers import bearer, bind_ecert, login, partner_token, terminal_token
from tests.identities import employee_id, resident_id

Client = httpx.AsyncClient
_names = itertools.count(1)


@dataclass
class Insured:
    tokens: dict[str, Any]
    cert_no: str
    channel: str
    user: str
    id_number: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.tokens["access_token"])


async def insured_patient(
    client: Client,
    sandbox: Client,
    settings: Settings,
    *,
    insurance: str = "employee",
    region: str = "330106",
    channel: str = "wechat",
    visiting: str | None = "H33010001",
) -> Insured:
    """A patient logged in on a phone with a freshly bound e-certificate (the sandbox's `测试` rule),
    who showed their QR code at the `visiting` institution today (so it may bill them by cert_no)."""
    user = f"patient-{uuid.uuid4().hex[:10]}"
    tokens = await login(client, sandbox, settings, channel, user)
    if insurance == "employee":
        id_number = employee_id(region)
    else:
        id_number = next(n for n in (resident_id(region) for _ in range(100)) if int(n[16]) % 2 == 0)
    bound = await bind_ecert(client, tokens, f"测试{next(_names)}号", id_number)
    assert bound.status_code == 200, bound.text
    patient = Insured(tokens, bound.json()["cert_no"], channel, user, id_number)
    if visiting is not None:
        await visit_token(client, patient, visiting)
    return patient


async def his_headers(client: Client, institution: str = "H33010001") -> dict[str, str]:
    """A hospital information system's token: it creates and refunds bills."""
    return bearer(await partner_token(client, "hospital", ["bills:write"], institution))


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


ITEMS = [
    {"code": "REG001", "name": "普通门诊诊查费", "category": "A", "quantity": 1, "unit_price_fen": 2500},
    {"code": "LAB031", "name": "血常规", "category": "A", "quantity": 1, "unit_price_fen": 3200},
    {"code": "MED201", "name": "阿莫西林胶囊", "category": "B", "quantity": 2, "unit_price_fen": 1850},
    {"code": "MED907", "name": "进口维生素", "category": "C", "quantity": 1, "unit_price_fen": 6800},
]


# A level-3 hospital's outpatient bill; the CT scan crosses the year's deductible.
WITH_CT = [
    {"code": "REG001", "name": "专家门诊诊查费", "category": "A", "quantity": 1, "unit_price_fen": 2500},
    {"code": "MED201", "name": "阿莫西林胶囊", "category": "B", "quantity": 2, "unit_price_fen": 1850},
    {"code": "MED907", "name": "进口维生素", "category": "C", "quantity": 1, "unit_price_fen": 6800},
    {"code": "CT0001", "name": "胸部CT平扫", "category": "A", "quantity": 1, "unit_price_fen": 60000},
]


async def new_bill(
    client: Client,
    his: dict[str, str],
    patient: Insured,
    items: list[dict[str, Any]] | None = None,
    order_type: str = "DIAG",
) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/partner/bills",
        json={"order_type": order_type, "cert_no": patient.cert_no, "items": items or ITEMS},
        headers={**his, **key()},
    )
    assert answer.status_code == 201, answer.text
    bill: dict[str, Any] = answer.json()
    return bill


def cash_item(amount_fen: int) -> list[dict[str, Any]]:
    """One self-pay item: the fund pays none of it, so it is all personal account or cash."""
    return [
        {"code": "SELF01", "name": "自费项目", "category": "C", "quantity": 1, "unit_price_fen": amount_fen}
    ]


async def visit_token(client: Client, patient: Insured, institution: str = "H33010001") -> str:
    """The patient shows the QR code; the hospital's terminal decodes it into a visit."""
    code = await client.get("/api/v1/ecert/qrcode", headers=patient.headers)
    terminal = bearer(await terminal_token(client, institution))
    opened = await client.post(
        "/api/v1/partner/ecert/decode", json={"qr": code.json()["payload"]}, headers=terminal
    )
    assert opened.status_code == 200, opened.text
    return str(opened.json()["visit_token"])


async def pay(
    client: Client, patient: Insured, bill_id: str, idempotency_key: str | None = None, **body: Any
) -> httpx.Response:
    headers = {**patient.headers, "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    return await client.post(f"/api/v1/bills/{bill_id}/pay", json=body, headers=headers)


async def refund(client: Client, his: dict[str, str], bill_id: str, **body: Any) -> httpx.Response:
    return await client.post(
        f"/api/v1/partner/bills/{bill_id}/refunds",
        json={"reason": "检查项目取消", **body},
        headers={**his, **key()},
    )


async def payer_pays(
    sandbox: Client, channel: str, out_trade_no: str, deliver: bool = False, outcome: str = "success"
) -> dict[str, Any]:
    """The patient confirms the payment in the channel's sheet; returns the channel's signed notification."""
    answer = await sandbox.post(
        f"/_sandbox/pay/{channel}/confirm",
        json={"out_trade_no": out_trade_no, "outcome": outcome, "deliver": deliver},
    )
    assert answer.status_code == 200, answer.text
    notification: dict[str, Any] = answer.json()["notification"]
    return notification


async def forged_notification(
    sandbox: Client, channel: str, out_trade_no: str, **overrides: Any
) -> dict[str, Any]:
    """A correctly signed notification for an order, with some fields changed."""
    answer = await sandbox.post(
        f"/_sandbox/pay/{channel}/notification",
        json={"out_trade_no": out_trade_no, "kind": "payment", "overrides": overrides},
    )
    assert answer.status_code in (200, 201), answer.text
    notification: dict[str, Any] = answer.json()
    return notification


async def post_notification(client: Client, channel: str, notification: dict[str, Any]) -> httpx.Response:
    """The channel's notification reaching our endpoint, exactly as the channel sends it."""
    url = f"/api/v1/payments/notify/{channel}"
    if channel == "wechat":
        return await client.post(
            url,
            content=notification["body"].encode(),
            headers={**notification["headers"], "Content-Type": "application/json"},
        )
    return await client.post(url, data=notification["form"])


async def paid_in_cash(
    client: Client, sandbox: Client, settings: Settings, run_worker: Any, channel: str = "wechat"
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """A resident's bill, its cash part paid through `channel` and the notification applied:
    (the hospital system's headers, the bill, the payment's answer)."""
    patient = await insured_patient(client, sandbox, settings, insurance="resident", channel=channel)
    his = await his_headers(client)
    bill = await new_bill(client, his, patient, WITH_CT)
    started = (await pay(client, patient, bill["id"], cash_method=channel)).json()
    await post_notification(client, channel, await payer_pays(sandbox, channel, started["out_trade_no"]))
    await run_worker()
    return his, bill, started
