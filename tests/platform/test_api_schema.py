"""The running service against its published schema: schemathesis sends every operation valid and
invalid requests over real HTTP (`medpay web`, granian, on the session's PostgreSQL, Redis and
sandbox) and checks that nothing answers 5xx and that each answer's status, media type, headers
and body are what the document declares.

A patient with a bound e-certificate, a hospital and a terminal are arranged for each operation,
and a drawn share of the examples is aimed at their real bills, codes and visits, so the success
answers are checked as well as the refusals. The books are audited after each operation. The
server's own log (a 500's traceback) is `web.log` in the session's temporary directory.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from backend.app import create_app
from backend.audit import full_audit
from backend.notify.templates import TEMPLATES
from backend.oauth.service import create_client
from backend.seed import seed
from backend.settings import Settings
from tests import servers
from tests.billing.factories import WITH_CT, his_headers, insured_patient, new_bill, pay
from tests.helpers import bearer, login, terminal_token
from tests.kiosk.arrange import kiosk

EXAMPLES = 20  # generated per operation, besides schemathesis's coverage cases: ~25 s in all


@schemathesis.check
def nosniff(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every answer, refusals included, tells browsers not to guess its type."""
    assert response.headers.get("x-content-type-options") == ["nosniff"], "no X-Content-Type-Options"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    nosniff,
    ignored_auth,
    missing_required_header,
    unsupported_method,
    negative_data_rejection,
]

# The document, built at import so that each operation is a test of its own; the last test
# checks that the running service publishes exactly this.
DOCUMENT = create_app(Settings.from_env({"MEDPAY_ENV": "test"})).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def web(settings: Settings, migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


@dataclass
class World:
    """Who calls, and the real objects a drawn share of the examples is pointed at."""

    web: str
    sandbox: str
    appid: str
    patient: dict[str, str]
    hospital: dict[str, str]
    terminal: dict[str, str]
    kiosk: dict[str, str]
    client: dict[str, str]  # HTTP Basic: the hospital's client credentials
    cert_no: str
    id_number: str
    refresh_token: str
    visit_token: str
    bills: list[str] = field(default_factory=list)

    def headers(self, case: schemathesis.Case) -> dict[str, str]:
        """The token the operation's security names: the patient's, the terminal's for the
        e-certificate and visits, the kiosk's for its own, the hospital's otherwise."""
        for requirement in case.operation.definition.raw.get("security") or []:
            if "patient" in requirement:
                return self.patient
            if "client" in requirement:
                return self.client
            if "partner" in requirement:
                if case.path.startswith(("/api/v1/partner/ecert", "/api/v1/partner/visits")):
                    return self.terminal
                if case.path.startswith("/api/v1/partner/kiosk"):
                    return self.kiosk
                return self.hospital
        return {}

    def aim(self, case: schemathesis.Case) -> None:
        """Point two valid cases in three at real objects: random ids and codes only meet refusals.
        Which ones, and at what, follows from what was generated, so a replayed case is aimed alike."""
        drawn = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
        if drawn % 3 == 0 or case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
            return
        path, body = case.path_parameters or {}, case.body
        if "bill_id" in path:
            path["bill_id"] = self.bills[drawn % len(self.bills)]
        if "template" in path:
            path["template"] = sorted(TEMPLATES)[drawn % len(TEMPLATES)]
        if isinstance(case.query, dict) and "visit_token" in case.query:
            case.query["visit_token"] = self.visit_token
        if not isinstance(body, dict):
            return
        if case.operation.path == "/api/v1/partner/bills":
            body.pop("visit_token", None)
            body["cert_no"] = self.cert_no
        elif "visit_token" in body:
            body["visit_token"] = self.visit_token
        elif "refresh_token" in body:
            body["refresh_token"] = self.refresh_token
        elif "qr" in body:
            body["qr"] = self._fresh_qr()
        elif "face_assertion" in body and case.operation.path == "/api/v1/partner/ecert/face":
            body["face_assertion"] = self._face()
        elif "code" in body and body.get("channel") == "wechat":
            body["code"] = self._login_code()
        elif case.operation.path == "/oauth/token":
            body.clear()
            body["grant_type"] = "client_credentials"

    def _fresh_qr(self) -> str:
        answer = httpx.get(f"{self.web}/api/v1/ecert/qrcode", headers=self.patient, timeout=10)
        return str(answer.json()["payload"])

    def _face(self) -> str:
        scan = {"id_type": "resident_id", "id_number": self.id_number}
        answer = httpx.post(f"{self.sandbox}/face/_sandbox/scan", json=scan, timeout=10)
        return str(answer.json()["assertion"])

    def _login_code(self) -> str:
        user = {"appid": self.appid, "user": f"fuzz-{uuid.uuid4().hex[:8]}"}
        answer = httpx.post(f"{self.sandbox}/wechat/_sandbox/login", json=user, timeout=10)
        return str(answer.json()["code"])


@pytest.fixture
async def world(
    web: str, client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings
) -> AsyncIterator[World]:
    """An employee with a bound e-certificate, an unpaid and a paid bill, a visit; then the audit."""
    await seed()
    patient = await insured_patient(client, sandbox_http, settings)
    hospital = await his_headers(client)
    terminal = bearer(await terminal_token(client))
    unpaid = await new_bill(client, hospital, patient, WITH_CT)
    paid = await new_bill(client, hospital, patient, WITH_CT)
    assert (await pay(client, patient, paid["id"], use_personal_account=True)).json()["state"] == "PAID"
    code = (await client.get("/api/v1/ecert/qrcode", headers=patient.headers)).json()["payload"]
    visit = await client.post("/api/v1/partner/ecert/decode", json={"qr": code}, headers=terminal)
    spare = await login(client, sandbox_http, settings, user=patient.user)
    credentials = await _client_credentials()
    yield World(
        web=web,
        sandbox=str(sandbox_http.base_url).rstrip("/"),
        appid=settings.wechat.appid,
        patient=patient.headers,
        hospital=hospital,
        terminal=terminal,
        kiosk=(await kiosk(client)).headers,
        client=credentials,
        cert_no=patient.cert_no,
        id_number=patient.id_number,
        refresh_token=spare["refresh_token"],
        visit_token=visit.json()["visit_token"],
        bills=[unpaid["id"], paid["id"]],
    )
    problems, _ = await full_audit()
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)


async def _client_credentials() -> dict[str, str]:
    credentials = await create_client("hospital", "fuzzed hospital", ["bills:write"], "H33010001")
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case, world: World) -> None:
    world.aim(case)
    case.call_and_validate(base_url=world.web, headers=world.headers(case), checks=CHECKS, timeout=10)


def test_the_running_service_publishes_this_document(web: str) -> None:
    assert httpx.get(f"{web}/schema/openapi.json", timeout=10).json() == DOCUMENT
