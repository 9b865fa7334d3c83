"""Access tokens, refresh-token rotation and reuse detection."""

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from backend.auth.tables import RefreshFamily, RefreshToken, SecurityEvent
from backend.oauth.service import create_client
from backend.platform.errors import Unauthorized
from backend.platform.outbox import OutboxMessage
from backend.platform.tokens import LEEWAY_SECONDS, PARTNER_AUDIENCE, PATIENT_AUDIENCE, TokenKeys
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
    # Signed out everywhere, access tokens too: the patient logs in again and is told why.
    assert (await client.get("/api/v1/me", headers=bearer(legit["access_token"]))).status_code == 401
    again = await login(client, sandbox_http, settings)
    listed = await client.get("/api/v1/me/security-events", headers=bearer(again["access_token"]))
    assert [e["kind"] for e in listed.json()] == ["session_revoked"]
    assert await OutboxMessage.count().where(OutboxMessage.done_at.is_not_null()) == 1


async def test_two_refreshes_with_one_token_at_once_are_a_reuse(
    client: Client, sandbox_http, settings
) -> None:
    import asyncio

    tokens = await login(client, sandbox_http, settings)
    body = {"refresh_token": tokens["refresh_token"]}

    answers = await asyncio.gather(*(client.post("/api/v1/auth/refresh", json=body) for _ in range(2)))

    # One rotates; the other presents a spent token, which is what a thief's copy looks like.
    assert sorted(a.status_code for a in answers) == [200, 401]
    assert await RefreshFamily.count().where(RefreshFamily.revoked_at.is_null()) == 0


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


async def test_an_expired_refresh_token_is_refused(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings)
    await RefreshToken.update({RefreshToken.expires_at: datetime.now(UTC) - timedelta(seconds=1)}, force=True)

    answer = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "REFRESH_TOKEN_INVALID"


def test_after_rotation_tokens_of_the_retired_key_still_verify(tmp_path, settings) -> None:
    new_key = tmp_path / "new.pem"
    new_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    retired_public = tmp_path / "retired.pub.pem"
    retired_public.write_bytes(
        serialization.load_pem_private_key(settings.auth.signing_key_file.read_bytes(), None)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    old = TokenKeys(settings.auth)
    new = TokenKeys(
        msgspec.structs.replace(
            settings.auth, signing_key_file=new_key, previous_public_keys=str(retired_public)
        )
    )
    issued_before = old.sign({"sub": "7"}, 60, PARTNER_AUDIENCE)
    issued_after = new.sign({"sub": "7"}, 60, PARTNER_AUDIENCE)

    assert new.kid != old.kid
    assert new.verify(issued_before, PARTNER_AUDIENCE)["sub"] == "7"
    assert new.verify(issued_after, PARTNER_AUDIENCE)["sub"] == "7"
    assert {key["kid"] for key in new.jwks()["keys"]} == {new.kid, old.kid}
    with pytest.raises(Unauthorized):
        old.verify(issued_after, PARTNER_AUDIENCE)


async def test_partner_tokens_name_their_key(client: Client, runtime) -> None:
    credentials = await create_client("bank", "bank 2", ["credit:callback"])
    answer = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.client_id, credentials.client_secret),
    )
    header = json.loads(base64.urlsafe_b64decode(answer.json()["access_token"].split(".")[0] + "=="))
    assert header["kid"] == runtime.tokens.kid
    assert header["typ"] == "at+jwt"


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "not-a-number", "channel": "wechat"},
        {"sub": "2147483648", "channel": "wechat"},  # beyond app_user.id
        {"sub": "99999999999999999999", "channel": "wechat"},
        {"sub": "-1", "channel": "wechat"},
        {"sub": "0", "channel": "wechat"},
        {"sub": 7, "channel": "wechat"},
        {"sub": "7", "channel": "qq"},
        {"sub": "7"},
    ],
)
async def test_a_validly_signed_patient_token_with_odd_claims_is_401(client: Client, runtime, claims) -> None:
    token = runtime.tokens.sign(claims, 60, PATIENT_AUDIENCE)

    answer = await client.get("/api/v1/me", headers=bearer(token))

    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "x", "kind": "hospital"},
        {"sub": "x", "client_id": "", "kind": "hospital"},
        {"sub": "x", "client_id": "x", "kind": "spaceship"},
        {"sub": "x", "client_id": "x", "kind": "hospital", "scope": ["bills:write"]},
        {"sub": "x", "client_id": "x", "kind": "hospital", "institution": 33010001},
    ],
)
async def test_a_validly_signed_partner_token_with_odd_claims_is_401(client: Client, runtime, claims) -> None:
    token = runtime.tokens.sign(claims, 60, PARTNER_AUDIENCE)

    answer = await client.get("/api/v1/partner/me", headers=bearer(token))

    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "TOKEN_INVALID"


async def test_a_token_checked_once_is_still_refused_once_it_expires(settings) -> None:
    """Verified tokens are remembered (a phone sends the same one with every request), their
    expiry checked on every use, with the same leeway; a token for another audience is not taken
    from memory."""
    keys = TokenKeys(settings.auth)
    token = keys.sign({"sub": "7", "channel": "wechat"}, 1 - LEEWAY_SECONDS, PATIENT_AUDIENCE)
    assert keys.verify(token, PATIENT_AUDIENCE)["sub"] == "7"
    assert keys.verify(token, PATIENT_AUDIENCE)["sub"] == "7"  # from memory
    with pytest.raises(Unauthorized):
        keys.verify(token, PARTNER_AUDIENCE)

    await asyncio.sleep(1.1)

    with pytest.raises(Unauthorized):
        keys.verify(token, PATIENT_AUDIENCE)
    with pytest.raises(Unauthorized):
        keys.verify(token, PATIENT_AUDIENCE)  # and not remembered as good again


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize(("ahead", "admitted"), [(5, True), (300, False)])
async def test_a_token_of_a_host_whose_clock_is_ahead_is_taken_within_30_seconds(
    client: Client, sandbox_http, settings, runtime, claim: str, ahead: int, admitted: bool
) -> None:
    """Signed on a host whose clock is `ahead`: issued (or valid from) that far in the future here."""
    real = claims_of((await login(client, sandbox_http, settings))["access_token"])
    issued = int(time.time()) + ahead
    token = runtime.tokens.sign(
        {**real, claim: issued, "exp": issued + settings.auth.access_ttl_seconds}, 0, PATIENT_AUDIENCE
    )

    answer = await client.get("/api/v1/me", headers=bearer(token))

    assert answer.status_code == (200 if admitted else 401), answer.text


@pytest.mark.parametrize(("behind", "admitted"), [(5, True), (300, False)])
async def test_a_token_of_a_host_whose_clock_is_behind_outlives_its_exp_by_30_seconds_at_most(
    client: Client, sandbox_http, settings, runtime, behind: int, admitted: bool
) -> None:
    real = claims_of((await login(client, sandbox_http, settings))["access_token"])
    issued = int(time.time()) - settings.auth.access_ttl_seconds - behind
    token = runtime.tokens.sign(
        {**real, "iat": issued, "exp": issued + settings.auth.access_ttl_seconds}, 0, PATIENT_AUDIENCE
    )

    for _ in range(2):  # checked, then taken from the memory of verified tokens
        answer = await client.get("/api/v1/me", headers=bearer(token))
        assert answer.status_code == (200 if admitted else 401), answer.text
