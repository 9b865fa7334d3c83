"""Face check at a kiosk: a signed face assertion stands in for the phone."""

import logging
from datetime import UTC, datetime

import pytest

from backend.ecert.tables import FaceAssertionUse, Visit
from backend.ecert.visits import assertion_id
from backend.seed import seed
from tests.helpers import (
    Client,
    bearer,
    bind_ecert,
    face_assertion,
    login,
    sandbox_calls,
    terminal_token,
)
from tests.identities import resident_id

SEEDED = ("李娜", "330106199007212462")


@pytest.fixture
async def kiosk(client: Client) -> str:
    await seed()
    return await terminal_token(client)


async def face_visit(client: Client, kiosk: str, assertion: str):
    return await client.post(
        "/api/v1/partner/ecert/face", json={"face_assertion": assertion}, headers=bearer(kiosk)
    )


async def test_a_bound_patients_face_opens_a_visit(client: Client, sandbox_http, settings, kiosk):
    tokens = await login(client, sandbox_http, settings)
    await bind_ecert(client, tokens, *SEEDED)

    answer = await face_visit(client, kiosk, await face_assertion(sandbox_http, SEEDED[1]))

    assert answer.status_code == 200, answer.text
    assert answer.json()["method"] == "face"
    assert answer.json()["patient"]["id_number"] == "330***********2462"


async def test_a_replayed_assertion_is_refused(client: Client, sandbox_http, settings, kiosk):
    tokens = await login(client, sandbox_http, settings)
    await bind_ecert(client, tokens, *SEEDED)
    assertion = await face_assertion(sandbox_http, SEEDED[1])

    first = await face_visit(client, kiosk, assertion)
    replay = await face_visit(client, kiosk, assertion)

    assert first.status_code == 200
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "ECERT_FACE_REPLAYED"
    assert await Visit.count() == 1


async def test_our_own_replay_guard_holds_if_the_platform_forgets(
    client: Client, sandbox_http, settings, kiosk
) -> None:
    tokens = await login(client, sandbox_http, settings)
    await bind_ecert(client, tokens, *SEEDED)
    assertion = await face_assertion(sandbox_http, SEEDED[1])
    # As if this assertion had opened a visit already and the platform's memory were lost.
    await FaceAssertionUse.insert(FaceAssertionUse(jti=assertion_id(assertion), used_at=datetime.now(UTC)))

    answer = await face_visit(client, kiosk, assertion)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "ECERT_FACE_REPLAYED"
    calls = await sandbox_calls(sandbox_http, "ecert", "verify_face")
    assert [c["outcome"] for c in calls] == ["ok"]  # the platform accepted it; we did not
    assert await Visit.count() == 0


@pytest.mark.parametrize(
    ("claims", "status", "code"),
    [
        ({"issued_at_offset": -200}, 400, "ECERT_FACE_STALE"),
        ({"score": 0.5}, 422, "ECERT_FACE_REJECTED"),
        ({"liveness": False}, 422, "ECERT_FACE_REJECTED"),
    ],
)
async def test_stale_or_weak_assertions_are_refused(
    client: Client, sandbox_http, settings, kiosk, claims, status, code
) -> None:
    import time

    tokens = await login(client, sandbox_http, settings)
    await bind_ecert(client, tokens, *SEEDED)
    if "issued_at_offset" in claims:
        claims = {"issued_at": int(time.time()) + claims.pop("issued_at_offset")}

    answer = await face_visit(client, kiosk, await face_assertion(sandbox_http, SEEDED[1], **claims))

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


async def test_a_forged_assertion_is_refused(client: Client, sandbox_http, settings, kiosk) -> None:
    assertion = await face_assertion(sandbox_http, SEEDED[1])
    head, claims, signature = assertion.split(".")
    forged = f"{head}.{claims}.{signature[::-1]}"

    answer = await face_visit(client, kiosk, forged)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ECERT_FACE_INVALID"


async def test_an_insured_person_without_a_binding_gets_no_visit(client: Client, sandbox_http, kiosk):
    answer = await face_visit(client, kiosk, await face_assertion(sandbox_http, "330102198503121236"))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ECERT_NOT_BOUND"


async def test_no_name_or_id_number_in_clear_in_logs_or_responses(
    client: Client, sandbox_http, settings, kiosk, caplog: pytest.LogCaptureFixture
) -> None:
    name, number = "测试隐私", resident_id()
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        tokens = await login(client, sandbox_http, settings, user="private")
        for answer in (
            await bind_ecert(client, tokens, name, number),
            await client.get("/api/v1/ecert", headers=bearer(tokens["access_token"])),
            qr := await client.get("/api/v1/ecert/qrcode", headers=bearer(tokens["access_token"])),
            await client.post(
                "/api/v1/partner/ecert/decode",
                json={"qr": qr.json()["payload"]},
                headers=bearer(kiosk),
            ),
            await face_visit(client, kiosk, await face_assertion(sandbox_http, number)),
            await bind_ecert(client, tokens, "测试错名", number),  # an error response too
        ):
            seen.append(answer.text)
    seen += [f"{record.getMessage()} {record.msg!r}" for record in caplog.records]
    seen += [str(call) for call in await sandbox_calls(sandbox_http, "ecert", "verify_identity")]

    assert len(caplog.records) > 5  # the flows did log
    for text in seen:
        assert name not in text
        assert number not in text
        assert number[6:14] not in text  # not even the birth date
