"""Every answer says `nosniff`; answers holding a token or personal data are never stored."""

import pytest

from backend.seed import seed
from tests.billing.factories import ITEMS, his_headers, insured_patient, key, new_bill
from tests.helpers import Client, bearer, face_assertion, terminal_token

NOSNIFF = ("x-content-type-options", "nosniff")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health/live", 200),
        ("GET", "/schema/openapi.json", 200),
        ("GET", "/api/v1/nothing-here", 404),
        ("DELETE", "/api/v1/auth/login", 405),
        ("POST", "/api/v1/auth/login", 400),
        ("GET", "/api/v1/me", 401),
        ("GET", "/api/v1/partner/me", 401),
        ("POST", "/api/v1/payments/notify/alipay", 400),
    ],
)
async def test_every_answer_says_nosniff_and_names_the_request(client: Client, method, path, status) -> None:
    answer = await client.request(
        method, path, json={} if method == "POST" else None, headers={"X-Request-ID": "trace-this-one-1"}
    )
    assert answer.status_code == status
    assert answer.headers.get(NOSNIFF[0]) == NOSNIFF[1]
    assert answer.headers.get_list("x-request-id") == ["trace-this-one-1"]  # echoed, once


async def test_an_answer_to_a_caller_without_a_sane_id_names_a_new_one(client: Client) -> None:
    unnamed = await client.get("/api/v1/me")
    odd = await client.get("/api/v1/me", headers={"X-Request-ID": "no spaces allowed"})

    ids = [unnamed.headers["x-request-id"], odd.headers["x-request-id"]]
    assert all(len(cid) == 32 for cid in ids) and ids[0] != ids[1]


async def test_tokens_and_personal_data_are_never_stored(client: Client, sandbox_http, settings) -> None:
    await seed()
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    terminal = bearer(await terminal_token(client))
    code = (await client.get("/api/v1/ecert/qrcode", headers=patient.headers)).json()["payload"]
    decoded = await client.post("/api/v1/partner/ecert/decode", json={"qr": code}, headers=terminal)
    visit = decoded.json()["visit_token"]
    bill = await new_bill(client, his, patient)
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": patient.tokens["refresh_token"]}
    )
    login_code = await sandbox_http.post(
        "/wechat/_sandbox/login", json={"appid": settings.wechat.appid, "user": patient.user}
    )
    answers = {
        "login": await client.post(
            "/api/v1/auth/login", json={"channel": "wechat", "code": login_code.json()["code"]}
        ),
        "refresh": refreshed,
        "me": await client.get("/api/v1/me", headers=patient.headers),
        "ecert": await client.get("/api/v1/ecert", headers=patient.headers),
        "bill": await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers),
        "bills": await client.get("/api/v1/bills", headers=patient.headers),
        "partner bill": await client.get(f"/api/v1/partner/bills/{bill['id']}", headers=his),
        "created bill": await client.post(
            "/api/v1/partner/bills",
            json={"order_type": "DIAG", "visit_token": visit, "items": ITEMS},
            headers={**his, **key()},
        ),
        "decode": decoded,
        "face": await client.post(
            "/api/v1/partner/ecert/face",
            json={"face_assertion": await face_assertion(sandbox_http, patient.id_number)},
            headers=terminal,
        ),
        "visit": await client.post(
            "/api/v1/partner/visits/lookup", json={"visit_token": visit}, headers=terminal
        ),
        "partner token": await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("nobody", "nothing"),
        ),
    }
    for name, answer in answers.items():
        assert answer.status_code < 500, (name, answer.text)
        assert answer.headers.get("cache-control") == "no-store", name
        assert answer.headers.get(NOSNIFF[0]) == NOSNIFF[1], name
    assert answers["created bill"].status_code == 201, answers["created bill"].text


async def test_public_answers_may_be_cached(client: Client) -> None:
    for path in ("/health/live", "/.well-known/jwks.json", "/api/v1/notification-templates"):
        assert "cache-control" not in (await client.get(path)).headers, path
