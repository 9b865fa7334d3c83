"""Every route is guarded, as the app's route table has it: a patient route by the patient token
check, a partner route by the partner token check naming the scope it needs (or none, any partner),
and the declared security says the same. The public routes are a list, each with why; a route in
neither fails the test, and so does an entry whose route is gone.

Then each route is called: a patient route refuses no token and every kind of partner token; a
partner route refuses no token, a patient token, and a token of every scope but its own; each
admits whom its guard names. The checks are functions of an app, shown to catch an unguarded
route on a small app made with one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import pytest
from litestar import Litestar, get, route
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.middleware.authentication import AbstractAuthenticationMiddleware
from litestar.routes import HTTPRoute

from backend.app import create_app
from backend.auth.routes import PatientAuthentication, PatientController, PatientDep
from backend.oauth.routes import PartnerAuthentication, provide_partner, requires_scope
from backend.oauth.scopes import INSTITUTION_KINDS, KINDS, SCOPE_KINDS, SCOPES
from backend.platform.deps import provide_runtime
from backend.platform.errors import EXCEPTION_HANDLERS
from backend.platform.openapi import partner_token
from backend.platform.runtime import Runtime
from backend.seed import seed
from backend.settings import Settings
from tests.helpers import bearer, login
from tests.helpers import partner_token as issued_partner_token


@dataclass(frozen=True)
class Public:
    """A route anyone may call, and why; what it answers a request with no credentials of its own
    (`None`: it needs none)."""

    why: str
    unauthenticated: int | None = None


# The only routes without a token check. Those that authenticate by other means are called without
# them and must refuse.
PUBLIC = {
    "GET /health/live": Public("liveness, for the load balancer"),
    "GET /health/ready": Public("readiness, for the load balancer"),
    "GET /schema": Public("the published document"),
    "GET /schema/openapi.json": Public("the published document"),
    "GET /schema/scalar": Public("the published document"),
    "GET /schema/swagger": Public("the published document"),
    "GET /schema/oauth2-redirect.html": Public("the published document"),
    "GET /schema/{path:str}": Public("the published document"),
    "GET /.well-known/jwks.json": Public("the public keys that verify our tokens"),
    "POST /oauth/token": Public("partners' client credentials are checked by authlib", 401),
    "POST /api/v1/auth/login": Public("the platform's login code is the credential", 400),
    "POST /api/v1/auth/refresh": Public("the refresh token is the credential", 401),
    "POST /api/v1/auth/logout": Public("the refresh token is the credential; unknown ones are ignored"),
    "POST /api/v1/callbacks/banks/{bank_code:str}": Public("banks sign their callbacks", 401),
    "POST /api/v1/payments/notify/wechat": Public("WeChat Pay signs its notifications", 400),
    "POST /api/v1/payments/notify/alipay": Public("Alipay signs its notifications", 400),
    "GET /api/v1/notification-templates": Public("templates rendered with sample data"),
    "GET /api/v1/notification-templates/{template:str}/preview": Public("a template with sample data"),
    "GET /mp/bill/{bill_id:uuid}": Public("a page that shows only the id its link carries"),
}
# What each public route is sent to show that it refuses without its own credentials.
UNAUTHENTICATED_BODIES = {
    "POST /oauth/token": {"data": {"grant_type": "client_credentials"}},
    "POST /api/v1/auth/login": {"json": {"channel": "wechat"}},
    "POST /api/v1/auth/refresh": {"json": {"refresh_token": "x" * 43}},
    "POST /api/v1/auth/logout": {"json": {"refresh_token": "x" * 43}},
    "POST /api/v1/callbacks/banks/{bank_code:str}": {"content": b"{}"},
    "POST /api/v1/payments/notify/wechat": {"content": b"{}"},
    "POST /api/v1/payments/notify/alipay": {"data": {"trade_no": "1"}},
}
PATH_VALUES = {"bank_code": "demo-bank"}


@dataclass(frozen=True)
class Guard:
    """The token check in front of a handler: a patient's, or a partner's holding `scope` (None: any)."""

    audience: str
    scope: str | None = None


def _is_litestars_options(handler: HTTPRouteHandler) -> bool:
    """The OPTIONS handler Litestar adds to every path (it answers `Allow`, nothing else)."""
    return handler.fn.__qualname__.endswith("create_options_handler.<locals>.options_handler")


def _guards(handler: HTTPRouteHandler) -> tuple[list[Guard], list[str]]:
    """The token checks among the handler's middleware (the controller's and the app's included)."""
    found, problems = [], []
    for middleware in handler.resolve_middleware():
        kind = middleware.middleware if isinstance(middleware, DefineMiddleware) else middleware
        options = middleware.kwargs if isinstance(middleware, DefineMiddleware) else {}
        if kind is PatientAuthentication:
            found.append(Guard("patient"))
        elif kind is PartnerAuthentication:
            found.append(Guard("partner", options.get("scope")))
        elif isinstance(kind, type) and issubclass(kind, AbstractAuthenticationMiddleware):
            problems.append(f"an authentication this test does not know: {kind.__name__}")
            continue
        else:
            continue
        if set(options) - {"scope"}:  # `exclude=...`, `exclude_http_methods=...`
            problems.append(f"its token check is configured with {sorted(options)}: it may skip requests")
    return found, problems


def _declared(guard: Guard) -> list[dict[str, list[str]]]:
    if guard.audience == "patient":
        return [{"patient": []}]
    return [{"partner": [guard.scope] if guard.scope else []}]


def guard_table(app: Litestar) -> tuple[dict[str, Guard | None], list[str]]:
    """Every operation ("METHOD /path" as the route table has it) with its guard (None: it has
    none), and what is wrong with how a guard is set up."""
    table: dict[str, Guard | None] = {}
    problems = []
    for entry in app.routes:
        if not isinstance(entry, HTTPRoute):
            problems.append(f"{entry.path}: a {type(entry).__name__}, which this test cannot check")
            continue
        for method, (handler, _) in entry.route_handler_map.items():
            operation = f"{method} {entry.path}"
            if method == "OPTIONS" and _is_litestars_options(handler):
                continue
            guards, found = _guards(handler)
            problems += [f"{operation}: {p}" for p in found]
            if method in ("OPTIONS", "HEAD"):
                problems.append(f"{operation}: a handler of its own for {method}, which no token check sees")
            if handler.opt.get("exclude_from_auth"):
                problems.append(f"{operation}: opts out of its token check (`exclude_from_auth`)")
            if len(guards) > 1:
                problems.append(f"{operation}: more than one token check: {guards}")
            guard = guards[0] if guards else None
            declared = handler.resolve_security()
            if guard is not None and declared != _declared(guard):
                problems.append(f"{operation}: guarded as {guard} but declares {declared}")
            table[operation] = guard
    return table, problems


def table_problems(app: Litestar, public: Mapping[str, Public]) -> list[str]:
    """Routes without a guard that are not public, public entries that are guarded or gone, and
    guards set up wrong."""
    table, problems = guard_table(app)
    for operation, guard in sorted(table.items()):
        if guard is None and operation not in public:
            problems.append(f"{operation}: no token check, and not in the list of public routes")
        if guard is not None and operation in public:
            problems.append(f"{operation}: listed as public, but guarded as {guard}")
    problems += [
        f"{operation}: listed as public, but there is no such route"
        for operation in public
        if operation not in table
    ]
    return problems


def url_of(operation: str) -> tuple[str, str]:
    """The method and a concrete path: each parameter a value of its type that names nothing."""
    method, template = operation.split(" ", 1)

    def value(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2)
        if name in PATH_VALUES:
            return PATH_VALUES[name]
        return {"uuid": str(uuid.uuid4()), "int": "2147483647"}.get(kind, "nothing-here")

    return method, re.sub(r"\{(\w+):(\w+)\}", value, template)


@dataclass(frozen=True)
class Caller:
    """Someone calling with a token (or none): a patient, or a partner of a kind holding one scope."""

    name: str
    headers: dict[str, str]
    audience: str | None = None
    kind: str | None = None
    scope: str | None = None


NOBODY = Caller("no token", {})


def _refusal(answer: httpx.Response, status: int, code: str) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if (
        answer.status_code != status
        or not isinstance(body, dict)
        or body.get("error", {}).get("code") != code
    ):
        return f"answered {answer.status_code} {answer.text[:200]}, not {status} {code}"
    if set(body) != {"error"} or set(body["error"]) != {"code", "message", "detail"}:
        return f"a refusal outside the envelope: {answer.text[:200]}"
    return None


def _admitted(answer: httpx.Response) -> str | None:
    if answer.status_code == 401 or "INSUFFICIENT_SCOPE" in answer.text:
        return f"refused whom its guard admits: {answer.status_code} {answer.text[:200]}"
    if answer.status_code >= 500:
        return f"answered {answer.status_code}: {answer.text[:200]}"
    return None


def expected(guard: Guard | None, caller: Caller) -> tuple[int, str] | None:
    """What the caller must be answered by a route with `guard`: a refusal (status, code), or
    None for admitted (answered as the route answers, never 401 or a missing scope)."""
    if caller is NOBODY:
        return 401, "UNAUTHORIZED"
    if guard is None:
        return 401, "UNAUTHORIZED"  # what a route that is not public must do at the least
    if caller.audience != guard.audience:
        return 401, "TOKEN_INVALID"
    if guard.scope is not None and caller.scope != guard.scope:
        return 403, "INSUFFICIENT_SCOPE"
    return None


# A body that does not read: the token is checked before it, so it never matters.
UNREADABLE = {"content": b'{"not": json', "headers": {"Content-Type": "application/json"}}


def _callers_at(guard: Guard | None, callers: list[Caller]) -> list[Caller]:
    """Who calls a route: no one, at a route with no guard; at a patient route, the patient and a
    token of each partner kind; at a partner route, everyone."""
    if guard is None:
        return [NOBODY]
    if guard.audience == "patient":
        kinds = {c.kind: c for c in reversed(callers) if c.audience == "partner"}
        return [NOBODY, *(c for c in callers if c.audience == "patient"), *kinds.values()]
    return [NOBODY, *callers]


async def probe_problems(
    client: httpx.AsyncClient, app: Litestar, public: Mapping[str, Public], callers: list[Caller]
) -> tuple[list[str], int]:
    """Every route that is not public called by each caller, and every public one that has
    credentials of its own called without them; the problems, and the calls made."""
    table, _ = guard_table(app)
    problems, calls = [], 0
    for operation, guard in sorted(table.items()):
        method, path = url_of(operation)
        if operation in public:
            if (status := public[operation].unauthenticated) is not None:
                answer = await client.request(method, path, **UNAUTHENTICATED_BODIES.get(operation, {}))
                calls += 1
                if answer.status_code != status:
                    problems.append(
                        f"{operation} without credentials: {answer.status_code} {answer.text[:200]}"
                    )
            continue
        body = {} if method in ("GET", "DELETE") else UNREADABLE
        for caller in _callers_at(guard, callers):
            headers = {**body.get("headers", {}), **caller.headers}
            answer = await client.request(method, path, content=body.get("content"), headers=headers)
            calls += 1
            want = expected(guard, caller)
            found = _admitted(answer) if want is None else _refusal(answer, *want)
            if found is None and want == (403, "INSUFFICIENT_SCOPE") and guard is not None:
                required = answer.json()["error"]["detail"].get("required_scope")
                if required != guard.scope:
                    found = f"names the scope {required!r}, not {guard.scope!r}"
            if found is not None:
                problems.append(f"{operation} as {caller.name}: {found}")
    return problems, calls


def holdable() -> list[tuple[str, str]]:
    """Every (kind, scope) a partner client can be registered with."""
    return [(kind, scope) for scope in SCOPES for kind in KINDS if kind in SCOPE_KINDS.get(scope, KINDS)]


async def partner_tokens(client: httpx.AsyncClient) -> list[Caller]:
    """A real token (by `/oauth/token`) of a client of each kind holding each scope it may hold,
    that scope alone; the institutions must be seeded."""
    callers = []
    for kind, scope in holdable():
        institution = "H33010001" if kind in INSTITUTION_KINDS else None
        token = await issued_partner_token(client, kind, [scope], institution)
        callers.append(Caller(f"a {kind} holding {scope}", bearer(token), "partner", kind, scope))
    return callers


@pytest.fixture(scope="module")
def published(settings: Settings, runtime: Runtime) -> Litestar:
    """The app as `create_app` makes it: the session's may carry routes other tests registered."""
    made = create_app(settings)
    made.state.runtime = runtime
    return made


@pytest.fixture
async def published_client(published: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=published)
    async with httpx.AsyncClient(transport=transport, base_url="http://medpay.test") as client:
        yield client


@pytest.fixture
async def callers(
    client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings
) -> list[Caller]:
    await seed()
    tokens = await login(client, sandbox_http, settings, "wechat", f"guards-{uuid.uuid4().hex[:8]}")
    return [Caller("a patient", bearer(tokens["access_token"]), "patient"), *await partner_tokens(client)]


def test_every_route_is_guarded_or_listed_as_public(published: Litestar) -> None:
    problems = table_problems(published, PUBLIC)

    assert problems == [], "routes not guarded as they must be:\n" + "\n".join(problems)
    table, _ = guard_table(published)
    assert {g.audience for g in table.values() if g} == {"patient", "partner"}
    assert {g.scope for g in table.values() if g and g.audience == "partner"} >= set(SCOPES) - {
        "credit:callback"
    }


async def test_every_route_refuses_whom_its_guard_does_not_admit_and_admits_the_others(
    published_client: httpx.AsyncClient, published: Litestar, callers: list[Caller]
) -> None:
    problems, calls = await probe_problems(published_client, published, PUBLIC, callers)

    table, _ = guard_table(published)
    partner_routes = [g for g in table.values() if g and g.audience == "partner"]
    patient_routes = [g for g in table.values() if g and g.audience == "patient"]
    assert calls >= len(partner_routes) * (2 + len(holdable())) + len(patient_routes) * 6
    assert problems == [], f"{len(problems)} of {calls} calls answered wrong:\n" + "\n".join(problems)


# -- the checks catch what they are for ---------------------------------------------------------


@get("/tiny/open", sync_to_thread=False)
def tiny_open() -> dict[str, str]:
    return {"patients": "all of them"}


@get(
    "/tiny/mislabelled",
    middleware=[requires_scope("kiosk:pay")],
    security=partner_token("bills:write"),
    sync_to_thread=False,
)
def tiny_mislabelled() -> None:
    return None


class TinyPatientController(PatientController):
    path = "/tiny/me"

    @get("/", sync_to_thread=False)
    def me(self, patient: PatientDep) -> dict[str, int]:
        return {"user": patient.user_id}

    @get("/opted-out", opt={"exclude_from_auth": True}, sync_to_thread=False)
    def opted_out(self) -> dict[str, str]:
        return {"patients": "all of them"}

    @route("/preflight", http_method=["OPTIONS"], sync_to_thread=False)
    def preflight(self) -> dict[str, str]:
        return {"patients": "all of them"}


def tiny_app(runtime: Runtime) -> Litestar:
    """An app with a route of each mistake, and one guarded right."""
    tiny = Litestar(
        route_handlers=[tiny_open, tiny_mislabelled, TinyPatientController],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "partner": Provide(provide_partner, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
    )
    tiny.state.runtime = runtime
    return tiny


async def test_the_checks_report_an_unguarded_route_and_each_other_mistake(
    runtime: Runtime, callers: list[Caller]
) -> None:
    tiny = tiny_app(runtime)
    public = {"GET /tiny/gone": Public("listed, but no such route")}

    problems = table_problems(tiny, public)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=tiny), base_url="http://tiny.test"
    ) as client:
        probed, _ = await probe_problems(client, tiny, public, callers)

    def about(operation: str, found: list[str]) -> list[str]:
        return [p for p in found if p.startswith((f"{operation}:", f"{operation} as "))]

    assert about("GET /tiny/open", problems) == [
        "GET /tiny/open: no token check, and not in the list of public routes"
    ]
    assert about("GET /tiny/open", probed)  # and, called without a token, it answers
    assert any("opts out" in p for p in about("GET /tiny/me/opted-out", problems))
    assert about("GET /tiny/me/opted-out", probed)
    assert any("no token check sees" in p for p in about("OPTIONS /tiny/me/preflight", problems))
    assert any("declares" in p for p in about("GET /tiny/mislabelled", problems))
    assert "GET /tiny/gone: listed as public, but there is no such route" in problems
    # The route guarded right is admitted to its patient and refused to everyone else.
    assert about("GET /tiny/me", problems) == about("GET /tiny/me", probed) == []
    assert about("GET /tiny/mislabelled", probed) == []  # its guard works; only its label is wrong
