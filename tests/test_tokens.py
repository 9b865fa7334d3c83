"""Access tokens, refresh-token rotation and reuse detection."""

from backend.auth.tables import RefreshToken, SecurityEvent
from backend.platform.outbox import OutboxMessage
from backend.platform.tokens import PARTNER_AUDIENCE, PATIENT_AUDIENCE
from tests.helpers import Client, bearer, login


async def test_refresh_rotates_and_the_new_pair_works(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings)

    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})

    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert (await client.get("/api/v1/me", headers=bearer(fresh["access_token"]))).status_code == 200
    stored = await RefreshToken.select(RefreshToken.token_hash)
    assert all(tokens["refresh_token"] not in row["token_hash"] for row in stored)  # hashed


async def test_a_reused_refresh_token_revokes_the_family_and_records_why(
    client: Client, sandbox_http, settings, run_worker
) -> None:
    tokens = await login(client, sandbox_http, settings)
    stolen = tokens["refresh_token"]
    legit = (await client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})).json()

    reuse = await client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": stolen},
        headers={"X-Request-ID": "reuse-attempt-0001"},
    )

    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    assert reuse.headers["x-request-id"] == "reuse-attempt-0001"
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": legit["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "REFRESH_TOKEN_INVALID"

    worker = await run_worker()

    assert worker.jobs_complete == 1
    events = await SecurityEvent.select()
    assert [(e["kind"], e["correlation_id"]) for e in events] == [("session_revoked", "reuse-attempt-0001")]
    listed = await client.get("/api/v1/me/security-events", headers=bearer(legit["access_token"]))
    assert [e["kind"] for e in listed.json()] == ["session_revoked"]
    assert await OutboxMessage.count().where(OutboxMessage.done_at.is_not_null()) == 1


async def test_two_refreshes_with_one_token_at_once_rotate_only_once(
    client: Client, sandbox_http, settings
) -> None:
    import asyncio

    tokens = await login(client, sandbox_http, settings)
    body = {"refresh_token": tokens["refresh_token"]}

    answers = await asyncio.gather(*(client.post("/api/v1/auth/refresh", json=body) for _ in range(2)))

    assert sorted(a.status_code for a in answers) == [200, 401]
    assert await RefreshToken.count().where(RefreshToken.revoked_at.is_null()) == 0


async def test_logout_revokes_the_refresh_token(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings)

    out = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    assert out.status_code == 204
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401


async def test_expired_forged_and_wrong_audience_tokens_are_refused(client: Client, runtime) -> None:
    expired = runtime.tokens.sign({"sub": "1"}, -60, PATIENT_AUDIENCE)
    partner = runtime.tokens.sign({"sub": "1"}, 60, PARTNER_AUDIENCE)
    good = runtime.tokens.sign({"sub": "1"}, 60, PATIENT_AUDIENCE)
    head, payload, signature = good.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"

    for token in (expired, partner, forged, "not-a-jwt"):
        answer = await client.get("/api/v1/me", headers=bearer(token))
        assert answer.status_code == 401, token
        assert answer.json()["error"]["code"] == "TOKEN_INVALID"
    missing = await client.get("/api/v1/me")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
