"""The typed client (`miniprogram_stub.api`) in step with the app: a method for every operation of
the OpenAPI document and none for an operation it lacks, the Structs what the document generates,
and the golden path over real HTTP with typed answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.app import create_app
from backend.seed import seed
from backend.settings import Settings
from miniprogram_stub.api import ApiError, Medpay, models, operations
from miniprogram_stub.api import generate as generator
from tests import servers
from tests.identities import employee_id

DOCUMENT = create_app(Settings.from_env({"MEDPAY_ENV": "test"})).openapi_schema.to_schema()
OPERATIONS = {
    op["operationId"]
    for path in DOCUMENT["paths"].values()
    for method, op in path.items()
    if method in {"get", "put", "post", "delete", "patch"}
}
ITEMS = [
    models.ItemIn(code="REG001", name="普通门诊诊查费", category="A", quantity=1, unit_price_fen=2500),
    models.ItemIn(code="MED907", name="进口维生素", category="C", quantity=1, unit_price_fen=6800),
]


def test_every_operation_has_a_method_and_every_method_an_operation() -> None:
    covered = operations()
    assert sorted(OPERATIONS - covered.keys()) == [], "operations without a client method"
    assert {op: covered[op] for op in covered.keys() - OPERATIONS} == {}, "methods of no operation"


def test_the_structs_are_what_the_document_generates() -> None:
    assert generator.render(DOCUMENT) == Path(generator.MODELS).read_text(), (
        "models.py is out of date: python -m miniprogram_stub.api.generate <the app's openapi.json>"
    )


@pytest.fixture(scope="module")
def web(settings: Settings, migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


@pytest.fixture
async def api(web: str) -> Any:
    await seed()
    async with Medpay.connect(web) as client:
        yield client


async def test_the_golden_path_over_http_with_typed_answers(
    api: Medpay, sandbox_http: httpx.AsyncClient, settings: Settings, run_worker: Any
) -> None:
    login = {"appid": settings.wechat.appid, "user": f"typed-{uuid.uuid4().hex[:8]}"}
    code = (await sandbox_http.post("/wechat/_sandbox/login", json=login)).json()["code"]
    tokens = await api.auth.login(models.LoginRequest(channel="wechat", code=code))
    patient = api.as_token(tokens.access_token)
    bind = models.BindRequest(name="测试类型", id_type="resident_id", id_number=employee_id())
    ecert = await patient.ecert.bind(bind)
    assert ecert.identity.insurance_type == "employee"

    qr = await patient.ecert.qrcode()
    terminal = await api.as_partner("demo-terminal", "demo-terminal-secret")
    visit = await terminal.ecert.decode(qr.payload)
    assert (visit.method, visit.institution) == ("qr", "H33010001")
    with pytest.raises(ApiError) as used:  # a code is single use
        await terminal.ecert.decode(qr.payload)
    assert (used.value.status, used.value.code) == (409, "ECERT_QR_USED")

    his = await api.as_partner("demo-his", "demo-his-secret")
    bill = await his.bills.create(
        models.BillCreate(order_type="DIAG", items=ITEMS, visit_token=visit.visit_token)
    )
    assert (bill.state, bill.total_fen) == ("CREATED", 9300)

    split = await patient.bills.presettle(bill.id, models.PresettleRequest(use_personal_account=False))
    assert split.fund_fen + split.personal_account_fen + split.cash_fen == bill.total_fen
    assert split.personal_account_fen == 0 < split.cash_fen
    paying = await patient.bills.pay(
        bill.id, models.PayRequest(use_personal_account=False, cash_method="wechat")
    )
    assert (paying.state, paying.cash_fen) == ("PAYING", split.cash_fen)
    assert paying.out_trade_no is not None and paying.launch

    confirm = {"out_trade_no": paying.out_trade_no, "outcome": "success", "deliver": True}
    assert (await sandbox_http.post("/_sandbox/pay/wechat/confirm", json=confirm)).status_code == 200
    for _ in range(50):  # the notification reaches the web server; a worker applies it
        await run_worker()
        if (shown := await patient.bills.get(bill.id)).state == "PAID":
            break
        await asyncio.sleep(0.1)
    assert (shown.state, shown.cash_method, shown.cash_fen) == ("PAID", "wechat", split.cash_fen)

    with pytest.raises(ApiError) as missing:
        await patient.bills.get(uuid.uuid4())
    assert (missing.value.status, missing.value.code) == (404, "BILL_NOT_FOUND")
