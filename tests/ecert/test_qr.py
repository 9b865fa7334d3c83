"""The dynamic QR code: single use, short-lived, signed, read back by a real QR decoder."""

import base64
import io
from datetime import UTC, datetime, timedelta

import pytest
import resvg_py
import zxingcpp
from PIL import Image

from backend.ecert import qr
from backend.ecert.tables import EcertDecode, QrCode, Visit
from backend.seed import seed
from tests.helpers import Client, bearer, bind_ecert, login, terminal_token
from tests.identities import resident_id


@pytest.fixture
async def patient(client: Client, sandbox_http, settings) -> dict:
    await seed()
    tokens = await login(client, sandbox_http, settings)
    answer = await bind_ecert(client, tokens, "测试扫码", resident_id())
    assert answer.status_code == 200
    return tokens


async def fresh_code(client: Client, patient: dict, fmt: str = "json"):
    return await client.get(f"/api/v1/ecert/qrcode?format={fmt}", headers=bearer(patient["access_token"]))


async def decode(client: Client, terminal: str, payload: str):
    return await client.post("/api/v1/partner/ecert/decode", json={"qr": payload}, headers=bearer(terminal))


def read_qr(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert len(found) == 1
    return found[0].text


async def test_json_code_expires_in_a_minute_and_holds_no_personal_data(client: Client, patient):
    answer = await fresh_code(client, patient)

    body = answer.json()
    assert answer.headers["cache-control"] == "no-store"
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=55) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    assert 0 < body["refresh_in"] < 60
    prefix, *parts = body["payload"].split(".")
    raw = [base64.urlsafe_b64decode(p + "==") for p in parts]
    assert prefix == "MPQR1"
    assert [len(p) for p in raw] == [24, 16]  # a code id, an expiry and a MAC: room for nothing else


@pytest.mark.parametrize("fmt", ["png", "svg"])
async def test_the_picture_reads_back_to_a_code_a_terminal_accepts(client: Client, patient, fmt):
    picture = await fresh_code(client, patient, fmt)
    assert picture.headers["content-type"].startswith("image/png" if fmt == "png" else "image/svg+xml")
    png = picture.content if fmt == "png" else resvg_py.svg_to_bytes(svg_string=picture.text)

    payload = read_qr(bytes(png))

    visit = await decode(client, await terminal_token(client), payload)
    assert visit.status_code == 200, visit.text
    body = visit.json()
    assert body["method"] == "qr"
    assert body["institution"] == "H33010001"
    assert body["patient"]["name"] == "测**码"


async def test_a_code_decodes_once(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    terminal = await terminal_token(client)

    first = await decode(client, terminal, payload)
    again = await decode(client, terminal, payload)

    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ECERT_QR_USED"
    assert await Visit.count() == 1


async def test_two_terminals_scanning_one_code_at_once_open_one_visit(client: Client, patient):
    import asyncio

    payload = (await fresh_code(client, patient)).json()["payload"]
    terminals = [await terminal_token(client) for _ in range(5)]

    answers = await asyncio.gather(*(decode(client, t, payload) for t in terminals))

    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409]
    assert await Visit.count() == 1


async def test_an_expired_code_is_410(client: Client, patient, runtime) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    code_id, _ = qr.decode(payload, base64.b64decode(runtime.settings.ecert.qr_key))
    past = int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())
    expired = qr.encode(code_id, past, base64.b64decode(runtime.settings.ecert.qr_key))

    answer = await decode(client, await terminal_token(client), expired)

    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "ECERT_QR_EXPIRED"


async def test_an_expiry_enforced_by_the_database_too(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    await QrCode.update({QrCode.expires_at: datetime.now(UTC) - timedelta(seconds=1)}, force=True)

    answer = await decode(client, await terminal_token(client), payload)

    assert answer.status_code == 410


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p[:-2] + ("AA" if not p.endswith("AA") else "BB"),  # forged MAC
        lambda p: p.replace("MPQR1", "MPQR2"),
        lambda p: p.split(".")[0] + "." + p.split(".")[1],  # truncated
        lambda p: "not a code at all",
        lambda p: "MPQR1.%%%.***",
    ],
)
async def test_forged_or_garbled_codes_are_400(client: Client, patient, tamper) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]

    answer = await decode(client, await terminal_token(client), tamper(payload))

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ECERT_QR_INVALID"
    assert answer.json()["error"]["detail"]["field"] == "qr"


async def test_a_newer_code_voids_the_older_one(client: Client, patient) -> None:
    older = (await fresh_code(client, patient)).json()["payload"]
    newer = (await fresh_code(client, patient)).json()["payload"]
    terminal = await terminal_token(client)

    refused = await decode(client, terminal, older)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "ECERT_QR_SUPERSEDED"
    assert (await decode(client, terminal, newer)).status_code == 200


async def test_unbinding_voids_the_live_code(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    await client.delete("/api/v1/ecert", headers=bearer(patient["access_token"]))

    answer = await decode(client, await terminal_token(client), payload)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "ECERT_QR_SUPERSEDED"


async def test_every_decode_is_recorded_for_supervision(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    terminal = await terminal_token(client)

    await decode(client, terminal, payload)

    record = await EcertDecode.select(
        EcertDecode.client_id, EcertDecode.method, EcertDecode.institution_id.code
    ).first()
    me = await client.get("/api/v1/partner/me", headers=bearer(terminal))
    assert record == {
        "client_id": me.json()["client_id"],
        "method": "qr",
        "institution_id.code": "H33010001",
    }


async def test_a_visit_belongs_to_its_institution(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    here = await terminal_token(client, "H33010001")
    elsewhere = await terminal_token(client, "H31010001")
    visit = (await decode(client, here, payload)).json()["visit_token"]

    mine = await client.post(
        "/api/v1/partner/visits/lookup", json={"visit_token": visit}, headers=bearer(here)
    )
    theirs = await client.post(
        "/api/v1/partner/visits/lookup", json={"visit_token": visit}, headers=bearer(elsewhere)
    )

    assert mine.status_code == 200
    assert mine.json()["patient"]["name"] == "测**码"
    assert theirs.status_code == 403
    assert theirs.json()["error"]["code"] == "VISIT_WRONG_INSTITUTION"


async def test_only_terminals_with_the_scope_decode(client: Client, patient) -> None:
    from tests.helpers import partner_token

    payload = (await fresh_code(client, patient)).json()["payload"]
    his = await partner_token(client, "hospital", ["bills:write"], "H33010001")
    bank = await partner_token(client, "bank", ["ecert:decode"], None)

    assert (await decode(client, his, payload)).status_code == 403
    refused = await decode(client, bank, payload)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "NOT_AN_INSTITUTION"
    assert (await fresh_code(client, {"access_token": his})).status_code == 401


async def test_no_code_without_a_binding(client: Client, sandbox_http, settings) -> None:
    tokens = await login(client, sandbox_http, settings, user="unbound")
    answer = await fresh_code(client, tokens)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ECERT_NOT_BOUND"


async def test_fetching_codes_at_once_leaves_one_live_code(client: Client, patient) -> None:
    import asyncio

    codes = await asyncio.gather(*(fresh_code(client, patient) for _ in range(10)))
    terminal = await terminal_token(client)

    answers = [await decode(client, terminal, c.json()["payload"]) for c in codes]

    assert sum(a.status_code == 200 for a in answers) == 1
    assert await QrCode.count().where(QrCode.used_at.is_null() & QrCode.superseded_at.is_null()) == 0


async def test_refused_decodes_are_recorded_too(client: Client, patient) -> None:
    payload = (await fresh_code(client, patient)).json()["payload"]
    terminal = await terminal_token(client)
    await decode(client, terminal, payload)
    await decode(client, terminal, payload)
    await decode(client, terminal, "forged")

    outcomes = await EcertDecode.select(EcertDecode.outcome).order_by(EcertDecode.id)
    assert [o["outcome"] for o in outcomes] == ["visit_opened", "ECERT_QR_USED", "ECERT_QR_INVALID"]


async def test_spent_codes_are_purged_after_a_day(client: Client, patient) -> None:
    from backend.ecert.visits import purge_spent

    await fresh_code(client, patient)
    await fresh_code(client, patient)
    assert await purge_spent() == 0
    await QrCode.update({QrCode.expires_at: datetime.now(UTC) - timedelta(days=2)}, force=True)

    assert await purge_spent() == 2
    assert await QrCode.count() == 0
