"""Liveness, readiness and the API's self-description."""

import asyncio

from tests.helpers import Client


async def test_live_and_ready_check_postgres_and_redis(client: Client) -> None:
    live = await client.get("/health/live")
    assert live.json() == {"status": "ok"}

    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_ready_answers_503_in_the_envelope_when_redis_does_not_answer(client: Client, runtime) -> None:
    # CLIENT PAUSE makes Redis hold every command: to a client it is down.
    await runtime.redis.execute_command("CLIENT", "PAUSE", "2500", "ALL")
    try:
        ready = await client.get("/health/ready")
    finally:
        await asyncio.sleep(0.6)  # let the pause lapse before the next test touches Redis
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
