"""A hospital's system creates itemized bills; their patient, and only they, read them."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import pytest
import zxingcpp
from PIL import Image

from backend.billing.tables import Bill, BillItem
from backend.ecert.tables import Visit
from tests.billing.factories import ITEMS, his_headers, insured_patient, key, new_bill, visit_token


async def test_a_bill_for_a_visit_is_totalled_by_the_server_and_shown_to_its_patient(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    token = await visit_token(client, patient)

    created = await client.post(
        "/api/v1/partner/bills",
        json={"order_type": "DIAG", "visit_token": token, "items": ITEMS},
        headers={**his, **key()},
    )

    assert created.status_code == 201, created.text
    bill = created.json()
    assert bill["state"] == "CREATED"
    assert bill["total_fen"] == 2500 + 3200 + 2 * 1850 + 6800
    assert [i["amount_fen"] for i in bill["items"]] == [2500, 3200, 3700, 6800]
    assert bill["institution"]["code"] == "H33010001"
    assert bill["patient"]["name"].startswith("测")
    assert "*" in bill["patient"]["id_number"]
    assert bill["fund_fen"] is None
    assert bill["pay_url"].endswith(f"/mp/bill/{bill['id']}")

    mine = await client.get("/api/v1/bills", headers=patient.headers)
    assert [b["id"] for b in mine.json()["items"]] == [bill["id"]]
    shown = await client.get(f"/api/v1/bills/{bill['id']}", headers=patient.headers)
    assert shown.status_code == 200
    assert shown.json() == bill  # the answer to the create is the bill as stored


async def test_bills_come_in_pages_and_before_is_an_rfc3339_time(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    bills = [(await new_bill(client, his, patient))["id"] for _ in range(3)]

    first = (await client.get("/api/v1/bills?limit=2", headers=patient.headers)).json()
    rest = await client.get(
        "/api/v1/bills", params={"limit": 2, "before": first["next_before"]}, headers=patient.headers
    )

    assert [b["id"] for b in first["items"] + rest.json()["items"]] == bills[::-1]
    assert rest.json()["next_before"] is None
    # A Unix time, no offset, and times whose UTC falls off the calendar.
    for loose in (
        "0.5",
        "1700000000",
        "2026-01-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
    ):
        refused = await client.get("/api/v1/bills", params={"before": loose}, headers=patient.headers)
        assert refused.status_code == 400, loose
        assert refused.json()["error"]["detail"]["field"] == "before"


async def test_no_one_else_sees_the_bill(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    stranger = await insured_patient(client, sandbox_http, settings)
    bill = await new_bill(client, await his_headers(client), patient)

    assert (await client.get(f"/api/v1/bills/{bill['id']}", headers=stranger.headers)).status_code == 404
    assert (await client.get("/api/v1/bills", headers=stranger.headers)).json()["items"] == []
    other_hospital = await his_headers(client, "H31010001")
    answer = await client.get(f"/api/v1/partner/bills/{bill['id']}", headers=other_hospital)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "BILL_NOT_FOUND"


async def test_the_pay_code_opens_the_bill(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    bill = await new_bill(client, his, patient)

    png = await client.get(
        f"/api/v1/partner/bills/{bill['id']}/qrcode", params={"format": "png"}, headers=his
    )

    assert png.headers["content-type"] == "image/png"
    [decoded] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert decoded.text == bill["pay_url"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{**ITEMS[0], "category": "D"}]}, "items[0].category"),
        ({"items": [{**ITEMS[0], "quantity": 0}]}, "items[0].quantity"),
        ({"items": [{**ITEMS[0], "unit_price_fen": -5}]}, "items[0].unit_price_fen"),
        ({"items": [{**ITEMS[0], "unit_price_fen": 12.5}]}, "items[0].unit_price_fen"),
        ({"items": [{**ITEMS[0], "unit_price_fen": "1"}]}, "items[0].unit_price_fen"),
        ({"items": [{**ITEMS[0], "unit_price_fen": "1e2"}]}, "items[0].unit_price_fen"),
        ({"items": [{**ITEMS[0], "quantity": "1"}]}, "items[0].quantity"),
        ({"items": [{**ITEMS[0], "quantity": True}]}, "items[0].quantity"),
        ({"items": [{**ITEMS[0], "name": " "}]}, "items[0].name"),
        ({"items": [{k: v for k, v in ITEMS[0].items() if k != "code"}]}, "items[0].code"),
        ({"order_type": "SPA"}, "order_type"),
        ({"total_fen": 1}, "total_fen"),
        ({"visit_token": "x" * 20}, "visit_token"),
        ({"cert_no": None}, "visit_token"),
    ],
)
async def test_every_bad_field_is_named_and_nothing_is_written(client, sandbox_http, settings, change, field):
    patient = await insured_patient(client, sandbox_http, settings)
    body = {"order_type": "DIAG", "cert_no": patient.cert_no, "items": ITEMS, **change}

    answer = await client.post(
        "/api/v1/partner/bills", json=body, headers={**await his_headers(client), **key()}
    )

    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["detail"]["field"] == field
    assert await Bill.count() == 0
    assert await BillItem.count() == 0


async def test_a_repeated_create_replays_the_first_bill(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    his = await his_headers(client)
    body = {"order_type": "PHARMACY", "cert_no": patient.cert_no, "items": ITEMS}
    headers = {**his, **key()}

    answers = await asyncio.gather(
        *(client.post("/api/v1/partner/bills", json=body, headers=headers) for _ in range(10))
    )

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 9
    assert await Bill.count() == 1

    reused = await client.post("/api/v1/partner/bills", json={**body, "order_type": "DIAG"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    missing = await client.post("/api/v1/partner/bills", json=body, headers=his)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert await Bill.count() == 1


async def test_a_bill_by_cert_no_rests_on_a_recent_visit_at_the_institution(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings, visiting=None)
    his = await his_headers(client)
    body = {"order_type": "DIAG", "cert_no": patient.cert_no, "items": ITEMS}

    async def bill() -> tuple[int, str | None]:
        answer = await client.post("/api/v1/partner/bills", json=body, headers={**his, **key()})
        return answer.status_code, answer.json().get("error", {}).get("code")

    assert await bill() == (403, "NO_RECENT_VISIT")  # never seen here
    await visit_token(client, patient, "H31010001")
    assert await bill() == (403, "NO_RECENT_VISIT")  # seen at another hospital
    await visit_token(client, patient, "H33010001")
    window = timedelta(days=settings.billing.visit_window_days, minutes=1)
    await Visit.update({Visit.created_at: Visit.created_at - window}, force=True)
    assert await bill() == (403, "NO_RECENT_VISIT")  # seen here, too long ago
    assert await Bill.count() == 0
    await visit_token(client, patient, "H33010001")
    assert await bill() == (201, None)
