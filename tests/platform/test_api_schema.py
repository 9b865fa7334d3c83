"""The running service against its published schema: schemathesis sends every operation valid and
invalid requests over real HTTP (`medpay web`, granian, on the session's PostgreSQL, Redis and
sandbox) and checks that nothing answers 5xx and that each answer's status, media type, headers
and body are what the document declares.

Every operation is called by three callers: the one its security names (a patient with a bound
e-certificate, a hospital, a terminal, a kiosk, client credentials), a relative (a patient who
manages that patient's bills through a family link, and pays from their own account), and a bank
(its partner token; at the callback endpoint, events signed by a key the bank registered, forged,
stale or malformed). A drawn share of the examples is aimed at the world's real bills, codes,
visits and link, so the success answers are checked as well as the refusals. A stateful run then
chains operations by the links schemathesis infers between them (the document declares none). The
books are audited after each operation, and the bank events stored are applied by a worker, which
must flag what does not hold together rather than fail. The server's own log (a 500's traceback)
is `web.log` in the session's temporary directory.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from backend.app import create_app
from backend.audit import full_audit
from backend.credit import banks
from backend.credit.callbacks import HANDLERS
from backend.notify.templates import TEMPLATES
from backend.oauth.service import create_client
from backend.partners import webhooks
from backend.platform.tables import InboxEvent
from backend.seed import seed
from backend.settings import Settings
from tests import servers
from tests.billing.factories import WITH_CT, insured_patient, new_bill, pay
from tests.family.test_acting_for import linked
from tests.helpers import bearer, login, partner_token, terminal_token
from tests.kiosk.arrange import kiosk

# Generated per operation, besides schemathesis's coverage cases; each is sent by all three callers.
EXAMPLES = 10
SCENARIOS, STEPS = 15, 6  # the stateful run: scenarios of up to STEPS linked calls
ROLES = ("own", "relative", "bank")
CALLS: Counter[str] = Counter()  # requests sent, by caller: in the session's summary
ANSWERS: Counter[str] = Counter()  # and what they were answered
OPERATIONS: set[str] = set()


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
# checks that the running service publishes exactly this. The stateful run has a copy of its own:
# schemathesis writes the links it infers into the document it is given.
DOCUMENT = create_app(Settings.from_env({"MEDPAY_ENV": "test"})).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
linked_schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
CALLBACK = "/api/v1/callbacks/banks/{bank_code}"
BANK = "demo-bank"


@pytest.fixture(scope="module")
def web(settings: Settings, migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """How many requests reached how many operations, by caller: in the session's summary."""
    yield
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line(
                f"\nschemathesis: {sum(CALLS.values())} requests to {len(OPERATIONS)} operations"
            )
            for what, count in [*sorted(CALLS.items()), *sorted(ANSWERS.items())]:
                terminal.write_line(f"  {count:6d}  {what}")


@dataclass
class World:
    """Who calls, and the real objects a drawn share of the examples is pointed at."""

    web: str
    sandbox: str
    appid: str
    patient: dict[str, str]
    relative: dict[str, str]  # the holder of a link on which the patient granted `manage`
    hospital: dict[str, str]
    terminal: dict[str, str]
    kiosk: dict[str, str]
    bank: dict[str, str]  # the bank's partner token
    bank_key: Ed25519PrivateKey  # a callback key the bank registered
    client: dict[str, str]  # HTTP Basic: the hospital's client credentials
    cert_no: str
    id_number: str
    refresh_token: str
    visit_token: str
    link_id: int
    bills: list[str] = field(default_factory=list)
    roles: set[str] = field(default_factory=set)  # the callers this operation was sent by

    def headers(self, case: schemathesis.Case, role: str) -> dict[str, str]:
        """The relative's or the bank's token; for the caller the operation's security names, the
        patient's, the terminal's for the e-certificate and visits, the kiosk's for its own, the
        hospital's otherwise."""
        if role == "relative":
            return self.relative
        if role == "bank":
            return {} if case.operation.path == CALLBACK else self.bank
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

    def send(self, case: schemathesis.Case, role: str) -> None:
        """Aim the case for the caller, send it as them and hold the answer to the document. At its
        callback endpoint the bank posts four events to its own code, each of another kind."""
        drawn = self.drawn(case)
        self.aim(case, role, drawn)
        headers = self.headers(case, role)
        if role != "bank" or case.operation.path != CALLBACK:
            self._validate(case, role, headers)
            return
        case.path_parameters["bank_code"] = BANK  # its own: a stranger's code is the others' case
        # A case generated to go without the signature header goes without it (401): once is enough.
        positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
        for variant in range(4 if positive else 1):
            body, signed = self.bank_event(drawn, variant)
            self._validate(case.derive(), role, {**headers, **signed}, data=body)

    def _validate(self, case: schemathesis.Case, role: str, headers: dict[str, str], **extra: Any) -> None:
        answer = case.call_and_validate(
            base_url=self.web, headers=headers, checks=CHECKS, timeout=10, **extra
        )
        CALLS[role] += 1
        ANSWERS[f"{role} {answer.status_code // 100}xx"] += 1
        if role == "bank" and case.operation.path == CALLBACK:
            ANSWERS[f"bank callbacks {answer.status_code}"] += 1
        OPERATIONS.add(case.operation.label)
        self.roles.add(role)

    def drawn(self, case: schemathesis.Case) -> int:
        """A number drawn from what was generated: a replayed case draws the same."""
        return zlib.crc32(repr((case.path_parameters, case.query, case.body, dict(case.headers))).encode())

    def aim(self, case: schemathesis.Case, role: str, drawn: int) -> None:
        """Point two valid cases in three at real objects: random ids and codes only meet refusals.
        Which ones, and at what, follows from what was generated (`drawn`), so a replayed case is
        aimed alike."""
        if drawn % 3 == 0 or case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
            return
        path, body = case.path_parameters or {}, case.body
        if "bill_id" in path:
            path["bill_id"] = self.bills[drawn % len(self.bills)]
        if "link_id" in path:
            path["link_id"] = self.link_id
        if "bank_code" in path:
            path["bank_code"] = BANK
        if "template" in path:
            path["template"] = sorted(TEMPLATES)[drawn % len(TEMPLATES)]
        if isinstance(case.query, dict) and "visit_token" in case.query:
            case.query["visit_token"] = self.visit_token
        if not isinstance(body, dict):
            return
        if role == "relative" and "relative_link_id" in body:
            body["relative_link_id"] = self.link_id
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

    def bank_event(self, drawn: int, variant: int) -> tuple[bytes, dict[str, str]]:
        """What the bank posts: mostly an event of each type signed by its key (about objects
        that are not ours, with amounts out of range, or of an unknown type), else a body that is
        not an event, or a forged or stale signature. The document describes no body here."""
        kind = sorted(HANDLERS)[drawn % len(HANDLERS)]
        now = datetime.now(UTC).isoformat()
        data = {
            "application_id": str(uuid.UUID(int=drawn)),
            "drawdown_id": str(uuid.UUID(int=drawn + 1)),
            "repayment_id": f"R{drawn}",
            "refund_id": f"F{drawn}",
            "line_ref": f"L{drawn}",
            "limit_fen": 500_000,
            "expires_on": "2027-12-31",
            "amount_fen": [3000, 10**30, -1, 0][drawn % 4],
            "principal_fen": 3000,
            "interest_fen": 0,
            "reduced_owed_fen": 3000,
            "returned_fen": 0,
            "disbursement_ref": f"D{drawn}",
            "disbursed_at": now,
            "posted_at": now,
            "reason": "额度不足",
            "source": "patient",
        }
        event: Any = {"type": kind, "occurred_at": now, "data": data}
        chosen = (drawn // 7 + variant * 5) % 8
        if chosen == 5:
            event["type"] = "line.exploded"
        elif chosen == 6:
            event = [event]  # not an event
        body = msgspec.json.encode(event)
        if chosen == 7:
            body = body.replace(b'"reason":"', b'"reason":"\\u0000', 1)
        if chosen == 3:  # forged: signed by a key the bank never registered
            return body, webhooks.sign_headers([Ed25519PrivateKey.generate()], body)
        if chosen == 4:  # stale: ten minutes old
            return body, webhooks.sign_headers([self.bank_key], body, now=time.time() - 600)
        return body, {**webhooks.sign_headers([self.bank_key], body), "Content-Type": "application/json"}

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
    web: str, client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings, run_worker: Any
) -> AsyncIterator[World]:
    """An employee with a bound e-certificate, an unpaid and a paid bill, a visit, and a relative
    who manages them; a bank with a callback key. Then the bank events stored are applied, and the
    books audited."""
    await seed()
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    holder = await insured_patient(client, sandbox_http, settings, visiting=None)
    link = await linked(client, holder, patient, manage=True)
    granted = await client.put(
        f"/api/v1/family/links/{link['id']}/grants", json={"pay": True}, headers=holder.headers
    )
    assert granted.status_code == 200, granted.text
    scopes = ["bills:write", "bookings:write", "bookings:check-in"]
    hospital = bearer(await partner_token(client, "hospital", scopes, "H33010001"))
    terminal = bearer(await terminal_token(client))
    code = (await client.get("/api/v1/ecert/qrcode", headers=patient.headers)).json()["payload"]
    visit = await client.post("/api/v1/partner/ecert/decode", json={"qr": code}, headers=terminal)
    unpaid = await new_bill(client, hospital, patient, WITH_CT)
    paid = await new_bill(client, hospital, patient, WITH_CT)
    assert (await pay(client, patient, paid["id"], use_personal_account=True)).json()["state"] == "PAID"
    spare = await login(client, sandbox_http, settings, user=patient.user)
    bank_key = Ed25519PrivateKey.generate()
    raw = bank_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    await banks.add_key(BANK, "fuzz", f"{webhooks.PUBLIC_PREFIX}{base64.b64encode(raw).decode()}")
    made = World(
        web=web,
        sandbox=str(sandbox_http.base_url).rstrip("/"),
        appid=settings.wechat.appid,
        patient=patient.headers,
        relative=holder.headers,
        hospital=hospital,
        terminal=terminal,
        kiosk=(await kiosk(client)).headers,
        bank=bearer(await partner_token(client, "bank", ["credit:callback"], None)),
        bank_key=bank_key,
        client=await _client_credentials(),
        cert_no=patient.cert_no,
        id_number=patient.id_number,
        refresh_token=spare["refresh_token"],
        visit_token=visit.json()["visit_token"],
        link_id=link["id"],
        bills=[unpaid["id"], paid["id"]],
    )
    yield made
    assert made.roles in (set(), set(ROLES)), f"sent only by {made.roles}"
    if await InboxEvent.exists():
        await run_worker()
        left = await InboxEvent.select(InboxEvent.state, InboxEvent.outcome).where(
            InboxEvent.state.not_in(["applied", "flagged", "ignored", "waiting"])
        )
        assert left == [], f"bank events the worker did not settle: {left}"
    problems, _ = await full_audit()
    assert problems == [], "the audit found problems:\n" + "\n".join(problems)


async def _client_credentials() -> dict[str, str]:
    credentials = await create_client("hospital", "fuzzed hospital", ["bills:write"], "H33010001")
    pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case, world: World) -> None:
    """Coverage cases (each field's boundaries and wrong values) by the operation's own caller;
    generated ones by all three callers, each aimed for its caller."""
    fuzzed = case.meta is not None and case.meta.phase.name.value == "fuzzing"
    for role in ROLES if fuzzed else ROLES[:1]:
        world.send(case if role == "own" else case.derive(), role)


def test_operations_chained_by_their_links(world: World) -> None:
    """The document declares no links (Litestar writes none); schemathesis infers them from the
    schemas (a bill's `id` in a list is the `bill_id` of its page, pay, refunds...), and chains
    the calls: what one answer names, the next uses, by the caller the operation's security names
    or, for a patient's operation, by the relative too."""
    machine = linked_schema.as_state_machine()
    assert linked_schema.statistic.transitions.total > 0, "no links inferred"

    callers: dict[str, str] = {}  # case id -> who sends it, drawn before the case is aimed

    class AgainstTheWorld(machine):
        def before_call(self, case: schemathesis.Case) -> None:
            drawn = world.drawn(case)
            patients = any("patient" in r for r in case.operation.definition.raw.get("security") or [])
            callers[case.id] = "relative" if patients and drawn % 3 == 1 else "own"
            world.aim(case, callers[case.id], drawn)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            role = callers[case.id]
            CALLS[f"{role} (linked)"] += 1
            return {"base_url": world.web, "headers": world.headers(case, role), "timeout": 10}

        def validate_response(
            self, response: Any, case: schemathesis.Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            checks = [*CHECKS, use_after_free, ensure_resource_availability]
            case.validate_response(
                response, checks=checks, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    AgainstTheWorld.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_the_running_service_publishes_this_document(web: str) -> None:
    assert httpx.get(f"{web}/schema/openapi.json", timeout=10).json() == DOCUMENT
