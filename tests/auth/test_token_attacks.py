"""Tokens an attacker makes from a real one and what we publish (the JWKS): each is 401
`TOKEN_INVALID`, answered exactly as a token that is not a JWT at all, so nothing tells what gave it
away. Tokens of the wrong audience, or of a partner kind at another kind's routes, are refused as
well; and the access tokens of a login that ended (logout, a reused refresh token) stop, whatever
Redis does.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from arq import ArqRedis
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from litestar import Litestar

from backend.auth.logins import EndedLogins
from backend.auth.tables import SecurityEvent
from backend.oauth.scopes import SCOPES
from backend.platform import outbox
from backend.platform.outbox import OutboxMessage
from backend.platform.runtime import Runtime, open_redis
from backend.seed import seed
from backend.settings import Settings
from tests import servers
from tests.helpers import Client, bearer, login, partner_token
from tests.platform.test_route_guards import guard_table, published, url_of
from tests.servers import free_port

__all__ = ["published"]  # the app as `create_app` makes it, whose route table is read

PATIENT_ROUTE = "/api/v1/me"
PARTNER_ROUTE = "/api/v1/partner/me"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def opened(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A compact JWS's header, claims and signature, as anyone can read them."""
    header, claims, signature = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "==")),
        json.loads(base64.urlsafe_b64decode(claims + "==")),
        signature,
    )


@dataclass(frozen=True)
class Material:
    """What an attacker works from: a real token and its route, our published keys, a key of
    their own; and, to show a test's token is refused for the one thing changed, our signing key."""

    token: str
    route: str
    published: dict[str, Any]  # our JWKS
    own_key: ECKey
    our_key: Any

    @property
    def header(self) -> dict[str, Any]:
        return opened(self.token)[0]

    @property
    def claims(self) -> dict[str, Any]:
        return opened(self.token)[1]

    @property
    def kid(self) -> str:
        return str(self.header["kid"])

    def public_pem(self) -> bytes:
        key = KeySet.import_key_set(self.published).get_by_kid(self.kid)
        return bytes(key.as_pem(private=False))

    def signed(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Signed with our key: only the changed header field or claim is wrong."""
        return str(jwt.encode(header, claims, self.our_key))

    def with_claims(self, **changes: Any) -> str:
        claims = {k: v for k, v in {**self.claims, **changes}.items() if v is not DROP}
        return self.signed(self.header, claims)

    def with_header(self, **changes: Any) -> str:
        header = {k: v for k, v in {**self.header, **changes}.items() if v is not DROP}
        return self.signed(header, self.claims)


DROP = object()


def hmac_signed(m: Material, alg: str, secret: bytes) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{segment({**m.header, 'alg': alg})}.{segment(m.claims)}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), digest).digest())}"


def by_own_key(m: Material, **header: Any) -> str:
    return str(jwt.encode({"alg": "ES256", "typ": "at+jwt", **header}, m.claims, m.own_key))


def tampered(m: Material) -> str:
    """The claims changed to someone else's (another user, every scope), the signature kept."""
    header, _, signature = m.token.split(".")
    claims = m.claims
    claims = (
        {**claims, "sub": str(int(claims["sub"]) + 1)}
        if "channel" in claims
        else {**claims, "scope": " ".join(SCOPES)}
    )
    return f"{header}.{segment(claims)}.{signature}"


def now() -> int:
    return int(time.time())


ATTACKS: dict[str, Callable[[Material], str]] = {
    "alg none": lambda m: f"{segment({**m.header, 'alg': 'none'})}.{segment(m.claims)}.",
    "alg none, the signature kept": lambda m: (
        f"{segment({**m.header, 'alg': 'none'})}.{segment(m.claims)}.{m.token.split('.')[2]}"
    ),
    "alg NONE": lambda m: f"{segment({**m.header, 'alg': 'NONE'})}.{segment(m.claims)}.",
    "HS256 keyed by the public key's PEM": lambda m: hmac_signed(m, "HS256", m.public_pem()),
    "HS512 keyed by the public key's PEM": lambda m: hmac_signed(m, "HS512", m.public_pem()),
    "HS256 keyed by the published JWK": lambda m: hmac_signed(
        m, "HS256", json.dumps(m.published["keys"][0]).encode()
    ),
    "RS256 claimed over an ES256 signature": lambda m: (
        f"{segment({**m.header, 'alg': 'RS256'})}.{m.token.split('.', 1)[1]}"
    ),
    "an unknown kid": lambda m: m.with_header(kid="medpay-2025-retired"),
    "an empty kid": lambda m: m.with_header(kid=""),
    "no kid": lambda m: m.with_header(kid=DROP),
    "another key under our kid": lambda m: by_own_key(m, kid=m.kid),
    "another key, with its jwk in the header": lambda m: by_own_key(
        m, kid=m.own_key.thumbprint(), jwk=m.own_key.as_dict(private=False)
    ),
    "another key, with a jku to its JWKS": lambda m: by_own_key(
        m, kid=m.kid, jku="https://evil.example/jwks"
    ),
    "the claims changed, the signature kept": tampered,
    "the signature cut short": lambda m: m.token[:-8],
    "a JWS JSON serialization": lambda m: json.dumps(
        {
            "payload": m.token.split(".")[1],
            "protected": m.token.split(".")[0],
            "signature": m.token.split(".")[2],
        }
    ),
    "expired": lambda m: m.with_claims(iat=now() - 3600, exp=now() - 60),
    "not yet valid (nbf)": lambda m: m.with_claims(nbf=now() + 600),
    "issued in the future (iat)": lambda m: m.with_claims(iat=now() + 600),
    "no exp": lambda m: m.with_claims(exp=DROP),
    "no iat": lambda m: m.with_claims(iat=DROP),
    "no jti": lambda m: m.with_claims(jti=DROP),
    "another issuer": lambda m: m.with_claims(iss="https://evil.example"),
    "both audiences": lambda m: m.with_claims(aud=["medpay:patient", "medpay:partner"]),
    "the other audience": lambda m: m.with_claims(
        aud="medpay:partner" if m.claims["aud"] == "medpay:patient" else "medpay:patient"
    ),
    "typ JWT, not an access token": lambda m: m.with_header(typ="JWT"),
    "no typ": lambda m: m.with_header(typ=DROP),
}
# Validly signed partner tokens claiming what no registered client can hold.
PARTNER_ONLY: dict[str, Callable[[Material], str]] = {
    "a bank holding kiosk:pay": lambda m: m.with_claims(kind="bank", scope="kiosk:pay", institution=None),
    "a terminal holding bills:write": lambda m: m.with_claims(kind="terminal", scope="bills:write"),
    "a kiosk of no institution": lambda m: m.with_claims(kind="kiosk", scope="kiosk:pay", institution=DROP),
    "an empty institution": lambda m: m.with_claims(institution=""),
}
# And patient tokens without what ours carry (a token without `sid` is admitted: see below).
PATIENT_ONLY: dict[str, Callable[[Material], str]] = {
    "a login that is not a uuid": lambda m: m.with_claims(sid="1"),
    "a login that never was": lambda m: m.with_claims(sid=str(uuid.uuid4())),
}


@pytest.fixture
async def patient_material(client: Client, sandbox_http, settings: Settings, runtime: Runtime) -> Material:
    tokens = await login(client, sandbox_http, settings, "wechat", "attacked-patient")
    return await _material(client, runtime, tokens["access_token"], PATIENT_ROUTE)


@pytest.fixture
async def partner_material(client: Client, runtime: Runtime) -> Material:
    await seed()
    token = await partner_token(client, "hospital", ["bills:write", "bookings:write"], "H33010001")
    return await _material(client, runtime, token, PARTNER_ROUTE)


async def _material(client: Client, runtime: Runtime, token: str, route: str) -> Material:
    jwks = (await client.get("/.well-known/jwks.json")).json()
    return Material(token, route, jwks, ECKey.generate_key("P-256"), runtime.tokens.signing_key)


async def the_refusal(client: Client, route: str) -> httpx.Response:
    """How a token that is no JWT at all is refused: every forged token must be refused the same."""
    answer = await client.get(route, headers=bearer("not-a-jwt"))
    assert answer.status_code == 401
    assert answer.json() == {
        "error": {"code": "TOKEN_INVALID", "message": "the access token is invalid or expired", "detail": {}}
    }
    return answer


def refused_alike(answer: httpx.Response, reference: httpx.Response) -> list[str]:
    problems = []
    if (answer.status_code, answer.json()) != (reference.status_code, reference.json()):
        problems.append(f"answered {answer.status_code} {answer.text}")
    told = {k for k in answer.headers if k.lower().startswith("www-authenticate")}
    if told:
        problems.append(f"says more in {told}")
    return problems


async def test_the_genuine_tokens_and_ours_re_signed_are_admitted(
    client: Client, patient_material: Material, partner_material: Material
) -> None:
    """The attacks below change one thing of a token that works: it is not the rest that fails."""
    for m in (patient_material, partner_material):
        for token in (m.token, m.with_claims(), m.signed(m.header, m.claims)):
            answer = await client.get(m.route, headers=bearer(token))
            assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("attack", [*ATTACKS, *PATIENT_ONLY])
async def test_a_forged_patient_token_is_refused_saying_nothing_more(
    client: Client, patient_material: Material, attack: str
) -> None:
    forged = {**ATTACKS, **PATIENT_ONLY}[attack](patient_material)
    reference = await the_refusal(client, PATIENT_ROUTE)

    answer = await client.get(PATIENT_ROUTE, headers=bearer(forged))

    assert refused_alike(answer, reference) == []


@pytest.mark.parametrize("attack", [*ATTACKS, *PARTNER_ONLY])
async def test_a_forged_partner_token_is_refused_saying_nothing_more(
    client: Client, partner_material: Material, attack: str
) -> None:
    forged = {**ATTACKS, **PARTNER_ONLY}[attack](partner_material)
    reference = await the_refusal(client, PARTNER_ROUTE)

    answer = await client.get(PARTNER_ROUTE, headers=bearer(forged))

    assert refused_alike(answer, reference) == []


# -- the other audience, the other kind ----------------------------------------------------------

# A client of each kind as they are registered (backend/seed.py): what each holds.
KIND_SCOPES = {
    "hospital": ["bills:write", "bookings:write", "bookings:check-in"],
    "terminal": ["ecert:decode", "bookings:check-in"],
    "kiosk": ["ecert:decode", "kiosk:pay"],
    "bank": ["credit:callback"],
}


def operations_by_audience(app: Any) -> dict[str, list[tuple[str, str | None]]]:
    """The guarded operations from the route table: (operation, scope) by audience."""
    table, _ = guard_table(app)
    found: dict[str, list[tuple[str, str | None]]] = {"patient": [], "partner": []}
    for operation, guard in sorted(table.items()):
        if guard is not None:
            found[guard.audience].append((operation, guard.scope))
    return found


async def test_a_patient_token_at_every_partner_route_and_partner_tokens_at_every_patient_route(
    client: Client, published, sandbox_http, settings: Settings
) -> None:
    await seed()
    patient = bearer((await login(client, sandbox_http, settings))["access_token"])
    partners = {
        kind: bearer(await partner_token(client, kind, scopes, None if kind == "bank" else "H33010001"))
        for kind, scopes in KIND_SCOPES.items()
    }
    reference = await the_refusal(client, PATIENT_ROUTE)
    routes = operations_by_audience(published)
    problems = []

    for operation, _ in routes["partner"]:
        method, path = url_of(operation)
        answer = await client.request(method, path, headers=patient)
        problems += [f"{operation} as a patient: {p}" for p in refused_alike(answer, reference)]
    for operation, _ in routes["patient"]:
        method, path = url_of(operation)
        for kind, headers in partners.items():
            answer = await client.request(method, path, headers=headers)
            problems += [f"{operation} as a {kind}: {p}" for p in refused_alike(answer, reference)]

    assert len(routes["partner"]) >= 16 and len(routes["patient"]) >= 38
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("kind", list(KIND_SCOPES))
async def test_a_partner_of_one_kind_is_refused_at_the_routes_of_the_others(
    client: Client, published, kind: str
) -> None:
    await seed()
    token = bearer(
        await partner_token(client, kind, KIND_SCOPES[kind], None if kind == "bank" else "H33010001")
    )
    problems, refused = [], 0

    for operation, scope in operations_by_audience(published)["partner"]:
        method, path = url_of(operation)
        answer = await client.request(method, path, headers=token)
        if scope is None or scope in KIND_SCOPES[kind]:
            if answer.status_code == 401 or "INSUFFICIENT_SCOPE" in answer.text:
                problems.append(f"{operation}: refused its own kind: {answer.text}")
            continue
        refused += 1
        if (answer.status_code, answer.json()) != (
            403,
            {
                "error": {
                    "code": "INSUFFICIENT_SCOPE",
                    "message": f"this endpoint needs the scope '{scope}'",
                    "detail": {"required_scope": scope},
                }
            },
        ):
            problems.append(f"{operation}: {answer.status_code} {answer.text}")

    assert refused > 0
    assert problems == [], "\n".join(problems)


# -- ended logins ------------------------------------------------------------------------------


async def test_logging_out_ends_the_access_token_of_that_login_only(
    client: Client, sandbox_http, settings: Settings
) -> None:
    phone = await login(client, sandbox_http, settings, "wechat", "two-phones")
    tablet = await login(client, sandbox_http, settings, "wechat", "two-phones")
    assert (await client.get(PATIENT_ROUTE, headers=bearer(phone["access_token"]))).status_code == 200
    reference = await the_refusal(client, PATIENT_ROUTE)

    out = await client.post("/api/v1/auth/logout", json={"refresh_token": phone["refresh_token"]})

    assert out.status_code == 204
    # Checked once already (and remembered as verified): refused all the same.
    after = await client.get(PATIENT_ROUTE, headers=bearer(phone["access_token"]))
    assert refused_alike(after, reference) == []
    assert (await client.get(PATIENT_ROUTE, headers=bearer(tablet["access_token"]))).status_code == 200


async def test_a_reused_refresh_token_ends_the_thiefs_access_token_and_the_patients(
    client: Client, sandbox_http, settings: Settings
) -> None:
    patient = await login(client, sandbox_http, settings)
    thief = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": patient["refresh_token"]})
    ).json()
    assert (await client.get(PATIENT_ROUTE, headers=bearer(thief["access_token"]))).status_code == 200

    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": patient["refresh_token"]})

    assert reuse.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    reference = await the_refusal(client, PATIENT_ROUTE)
    for tokens in (thief, patient):
        answer = await client.get(PATIENT_ROUTE, headers=bearer(tokens["access_token"]))
        assert refused_alike(answer, reference) == []


async def test_rotation_alone_ends_nothing(client: Client, sandbox_http, settings: Settings) -> None:
    """A refresh is not a sign-out: the access token it replaces lives out its 15 minutes."""
    tokens = await login(client, sandbox_http, settings)
    fresh = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()

    for access in (tokens["access_token"], fresh["access_token"]):
        assert (await client.get(PATIENT_ROUTE, headers=bearer(access))).status_code == 200


async def test_after_logout_a_spent_refresh_token_is_invalid_not_a_new_reuse(
    client: Client, sandbox_http, settings: Settings, run_worker
) -> None:
    from backend.auth.tables import SecurityEvent

    tokens = await login(client, sandbox_http, settings)
    fresh = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    await client.post("/api/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]})

    answers = [
        await client.post("/api/v1/auth/refresh", json={"refresh_token": t["refresh_token"]})
        for t in (tokens, fresh)
    ]
    await run_worker()

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (401, "REFRESH_TOKEN_INVALID")
    ] * 2
    assert await SecurityEvent.count() == 0  # a logout is no forced sign-out
    for access in (tokens["access_token"], fresh["access_token"]):
        assert (await client.get(PATIENT_ROUTE, headers=bearer(access))).status_code == 401


async def test_a_token_without_a_login_is_admitted_and_lapses_at_its_expiry(
    client: Client, sandbox_http, settings: Settings, runtime: Runtime
) -> None:
    """Tokens issued before they named their login (`sid`) still work through a deploy. Nothing can
    end one early: a logout leaves it to its expiry, 15 minutes at most."""
    tokens = await login(client, sandbox_http, settings, "wechat", "before-the-release")
    m = await _material(client, runtime, tokens["access_token"], PATIENT_ROUTE)
    unnamed = m.with_claims(sid=DROP)
    assert (await client.get(PATIENT_ROUTE, headers=bearer(unnamed))).status_code == 200

    await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    assert (await client.get(PATIENT_ROUTE, headers=bearer(unnamed))).status_code == 200
    reference = await the_refusal(client, PATIENT_ROUTE)
    named = await client.get(PATIENT_ROUTE, headers=bearer(tokens["access_token"]))
    assert refused_alike(named, reference) == []
    expired = m.with_claims(sid=DROP, iat=now() - 3600, exp=now() - 60)
    assert refused_alike(await client.get(PATIENT_ROUTE, headers=bearer(expired)), reference) == []


def refresh_body(tokens: dict[str, Any]) -> dict[str, str]:
    return {"refresh_token": tokens["refresh_token"]}


def login_of(tokens: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(opened(tokens["access_token"])[1]["sid"])


@asynccontextmanager
async def serving_with(app: Litestar, runtime: Runtime, redis: ArqRedis) -> AsyncIterator[None]:
    """The in-process app's requests use `redis` instead of the session's Redis."""
    app.state.runtime = dataclasses.replace(runtime, redis=redis)
    try:
        yield
    finally:
        app.state.runtime = runtime


async def test_with_redis_out_of_reach_a_logout_and_a_reuse_end_their_logins_and_the_event_waits(
    client: Client, app: Litestar, sandbox_http, settings: Settings, runtime: Runtime, run_worker
) -> None:
    logged_out = await login(client, sandbox_http, settings, "wechat", "logged-out")
    robbed = await login(client, sandbox_http, settings, "wechat", "robbed")
    live = await login(client, sandbox_http, settings, "wechat", "live")
    unreachable = await open_redis(f"redis://127.0.0.1:{free_port()}")
    try:
        async with serving_with(app, runtime, unreachable):
            out = await client.post("/api/v1/auth/logout", json=refresh_body(logged_out))
            thief = await client.post("/api/v1/auth/refresh", json=refresh_body(robbed))
            reuse = await client.post("/api/v1/auth/refresh", json=refresh_body(robbed))
            answers = {
                who: (await client.get(PATIENT_ROUTE, headers=bearer(tokens["access_token"]))).status_code
                for who, tokens in [
                    ("logged out", logged_out),
                    ("robbed", robbed),
                    ("thief", thief.json()),
                    ("live", live),
                ]
            }
    finally:
        await unreachable.aclose()

    assert (out.status_code, thief.status_code) == (204, 200)
    assert reuse.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    assert answers == {"logged out": 401, "robbed": 401, "thief": 401, "live": 200}
    # Another process, which never saw these requests, has the same answers from PostgreSQL.
    elsewhere = EndedLogins()
    assert [await elsewhere.ended(login_of(t)) for t in (logged_out, robbed, live)] == [True, True, False]
    # The forced sign-out's security event waits in the outbox, the only message written, for Redis.
    assert await OutboxMessage.select(OutboxMessage.task) == [{"task": "auth.session_revoked"}]
    assert await outbox.send_pending(runtime.redis, timedelta(0)) == 1
    await run_worker()
    assert await SecurityEvent.select(SecurityEvent.kind, SecurityEvent.subject) == [
        {"kind": "session_revoked", "subject": str(login_of(robbed))}
    ]


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """The port of a Redis that takes connections and never answers (a hung server, a frozen host)."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening.getsockname()[1]


async def test_a_hung_redis_costs_patient_requests_and_logouts_nothing(
    client: Client, app: Litestar, sandbox_http, settings: Settings, runtime: Runtime, silent_redis: int
) -> None:
    ended = await login(client, sandbox_http, settings, "wechat", "ended")
    live = await login(client, sandbox_http, settings, "wechat", "live")
    hung = ArqRedis(port=silent_redis)  # no timeout: a call to it would never return
    try:
        async with serving_with(app, runtime, hung), asyncio.timeout(30):  # a hang guard only
            out = await client.post("/api/v1/auth/logout", json={"refresh_token": ended["refresh_token"]})
            answers = [
                (await client.get(PATIENT_ROUTE, headers=bearer(t["access_token"]))).status_code
                for t in (ended, live)
            ]
        with pytest.raises(TimeoutError):  # the Redis they were served with does hang
            async with asyncio.timeout(0.5):
                await hung.ping()
    finally:
        await hung.aclose()

    assert out.status_code == 204
    assert answers == [401, 200]


@pytest.fixture(scope="module")
def other_web(settings: Settings, migrated: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another web process, as production runs it, on the same PostgreSQL and Redis."""
    with servers.web(settings, tmp_path_factory.mktemp("web") / "web.log") as url:
        yield url


async def test_a_redis_emptied_after_a_logout_lets_its_token_in_on_no_process(
    client: Client, sandbox_http, settings: Settings, runtime: Runtime, other_web: str
) -> None:
    ended = await login(client, sandbox_http, settings, "wechat", "ended")
    live = await login(client, sandbox_http, settings, "wechat", "live")
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": ended["refresh_token"]})

    await runtime.redis.flushdb()  # a restart without persistence, a failover, a FLUSHALL, eviction

    assert out.status_code == 204
    reference = await the_refusal(client, PATIENT_ROUTE)
    async with httpx.AsyncClient(base_url=other_web, timeout=10) as elsewhere:
        for web in (client, elsewhere):
            answer = await web.get(PATIENT_ROUTE, headers=bearer(ended["access_token"]))
            assert refused_alike(answer, reference) == [], web.base_url
            assert (await web.get(PATIENT_ROUTE, headers=bearer(live["access_token"]))).status_code == 200
