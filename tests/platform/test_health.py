"""Liveness, readiness and the API's self-description."""

import dataclasses
from pathlib import Path

from litestar import Litestar

from backend.platform.runtime import Runtime, open_redis
from tests import servers
from tests.helpers import Client


async def test_live_and_ready_check_postgres_and_redis(client: Client) -> None:
    live = await client.get("/health/live")
    assert live.json() == {"status": "ok"}

    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_ready_answers_503_in_the_envelope_when_redis_does_not_answer(
    client: Client, app: Litestar, runtime: Runtime, tmp_path: Path
) -> None:
    """Against a Redis of its own, held by CLIENT PAUSE (to a client it is down): pausing the
    session's would hold every other test's Redis too, the other pytest worker's included."""
    with servers.redis_of_its_own(tmp_path) as url:
        frozen = await open_redis(url)
        await frozen.execute_command("CLIENT", "PAUSE", "10000", "ALL")
        app.state.runtime = dataclasses.replace(runtime, redis=frozen)
        try:
            ready = await client.get("/health/ready")
        finally:
            app.state.runtime = runtime
            await frozen.aclose()
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["detail"]["checks"]["postgres"] == "ok"
    assert error["detail"]["checks"]["redis"].startswith("error")


async def test_openapi_31_schema_and_interactive_page(client: Client) -> None:
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/auth/login" in document["paths"]
    assert "/oauth/token" in document["paths"]

    page = await client.get("/schema")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]


async def test_jwks_publishes_the_signing_key_by_kid(client: Client, runtime) -> None:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert [key["kid"] for key in keys] == [runtime.tokens.kid]
    assert all("d" not in key for key in keys)  # public halves only
