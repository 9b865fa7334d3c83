"""Partners: client credentials with scopes at /oauth/token, and a guard per scope."""

import base64
import dataclasses

import msgspec
import pytest
from litestar import get

from backend.oauth.routes import requires_scope
from backend.oauth.service import create_client
from backend.oauth.tables import PartnerClient
from backend.seed import seed
from tests.helpers import Client, bearer, partner_token
from tests.servers import medpay


@get("/test/bills-only", middleware=[requires_scope("bills:write")], include_in_schema=False)
async def bills_only() -> dict[str, str]:
    return {"ok": "yes"}


@pytest.fixture(scope="module", autouse=True)
def scoped_route(app) -> None:
    if "/test/bills-only" not in app.route_handler_method_map:
        app.register(bills_only)


async def test_a_terminal_gets_a_scoped_token_and_is_known_by_it(client: Client) -> None:
    await seed()
    token = await partner_token(client, "terminal", ["ecert:decode"], "H33010001")

    me = await client.get("/api/v1/partner/me", headers=bearer(token))

    assert me.json() == {
        "client_id": me.json()["client_id"],
        "kind": "terminal",
        "scopes": ["ecert:decode"],
        "institution": "H33010001",
    }


async def test_client_secret_post_works_too_and_the_secret_is_stored_hashed(client: Client) -> None:
    credentials = await create_client("bank", "bank", ["credit:callback"])

    answer = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
            "scope": "credit:callback",
        },
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "credit:callback"
    assert body["expires_in"] == 900
    stored = await PartnerClient.select(PartnerClient.secret_hash).first()
    assert credentials.client_secret not in str(stored)


async def test_the_scope_guard_admits_only_holders_of_the_scope(client: Client) -> None:
    await seed()
    his = await partner_token(client, "hospital", ["bills:write"], "H33010001")
    terminal = await partner_token(client, "terminal", ["ecert:decode"], "H33010001")

    assert (await client.get("/test/bills-only", headers=bearer(his))).status_code == 200
    refused = await client.get("/test/bills-only", headers=bearer(terminal))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize(
    ("form", "secret_ok", "status", "code"),
    [
        ({"grant_type": "client_credentials"}, False, 401, "INVALID_CLIENT"),
        ({"grant_type": "client_credentials", "scope": "bills:write"}, True, 400, "INVALID_SCOPE"),
        ({"grant_type": "client_credentials", "scope": "nonsense"}, True, 400, "INVALID_SCOPE"),
        ({"grant_type": "password"}, True, 400, "UNSUPPORTED_GRANT_TYPE"),
    ],
)
async def test_token_errors_come_in_the_envelope(client: Client, form, secret_ok, status, code):
    credentials = await create_client("bank", "bank", ["credit:callback"])
    secret = credentials.client_secret if secret_ok else "wrong"

    answer = await client.post("/oauth/token", data=form, auth=(credentials.client_id, secret))

    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["detail"]["oauth_error"] == code.lower()


async def test_unknown_client_is_invalid_client(client: Client) -> None:
    basic = base64.b64encode(b"ghost:secret").decode()
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "INVALID_CLIENT"


async def test_partner_create_command_prints_credentials_once(client: Client, settings) -> None:
    await seed()
    env = {"DATABASE_URL": settings.database.url, "REDIS_URL": settings.redis.url}
    create = ["partner", "create", "--kind", "terminal", "--scopes", "ecert:decode"]
    done = medpay(*create, "--name", "自助机 3", "--institution", "H33010001", env=env)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    client_id, secret = lines["client_id"].strip(), lines["client_secret"].strip()

    answer = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert answer.status_code == 200

    refused = medpay(*create, "--name", "no institution", env=env)
    assert refused.returncode != 0
    assert "institution" in refused.stderr


async def test_basic_credentials_that_are_not_utf8_are_invalid_client(client: Client) -> None:
    basic = base64.b64encode(b"\xff\xfe:\xfa").decode()
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "INVALID_CLIENT"


async def test_a_token_endpoint_reached_at_a_plain_http_url_refuses_in_the_envelope(
    client: Client, app, runtime, settings
) -> None:
    """Outside production (which refuses such a MEDPAY_PUBLIC_URL at start) a public URL that is
    plain HTTP and not loopback: OAuth 2 is served over TLS only, said as a 400, never a 500."""
    await seed()
    credentials = await create_client("hospital", "plain http", ["bills:write"], "H33010001")
    lan = msgspec.structs.replace(settings.app, public_url="http://10.0.0.5:8000")
    app.state.runtime = dataclasses.replace(runtime, settings=msgspec.structs.replace(settings, app=lan))
    try:
        answer = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(credentials.client_id, credentials.client_secret),
        )
    finally:
        app.state.runtime = runtime
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INSECURE_TRANSPORT"
