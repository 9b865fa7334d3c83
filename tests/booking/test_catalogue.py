"""Hospitals publish their schedules; patients browse them, a page at a time."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from typing import Any

import pytest

from backend.booking.tables import ClinicSession, Department, Doctor
from backend.hospitals.service import ensure_institution
from tests.billing.factories import insured_patient
from tests.booking.arrange import china_today, held, his, publish, schedule, session, session_ids
from tests.helpers import bearer, partner_token


def _week(capacity: int = 20) -> dict[str, Any]:
    days = [china_today() + timedelta(days=n) for n in range(1, 6)]
    return schedule(
        [session("D001", d, code=f"D001-{d:%m%d}-AM", capacity=capacity) for d in days]
        + [
            session("D002", d, code=f"D002-{d:%m%d}-PM", period="AFTERNOON", start="13:30", end="17:00")
            for d in days[:2]
        ]
    )


async def test_publishing_twice_changes_nothing_the_second_time(client):
    body = _week()

    first = await publish(client, body)
    second = await publish(client, body)

    assert (first["sessions_created"], first["sessions_updated"], first["doctors"]) == (7, 0, 2)
    assert (second["sessions_created"], second["sessions_updated"]) == (0, 0)
    assert await ClinicSession.count() == 7 and await Doctor.count() == 2 and await Department.count() == 1


async def test_patients_browse_hospitals_departments_doctors_and_sessions_with_places_left(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    await publish(client, _week(capacity=20))
    tomorrow = china_today() + timedelta(days=1)

    hangzhou = (
        await client.get("/api/v1/hospitals", params={"region": "3301"}, headers=patient.headers)
    ).json()
    named = (await client.get("/api/v1/hospitals", params={"q": "第六"}, headers=patient.headers)).json()
    hospital = next(h for h in hangzhou["items"] if h["code"] == "H33010001")
    departments = (
        await client.get(f"/api/v1/hospitals/{hospital['id']}/departments", headers=patient.headers)
    ).json()
    doctors = await client.get(
        f"/api/v1/departments/{departments['items'][0]['id']}/doctors",
        params={"date": tomorrow.isoformat()},
        headers=patient.headers,
    )

    assert [h["code"] for h in hangzhou["items"]] == ["H33010001", "H33010002"]
    assert [h["code"] for h in named["items"]] == ["H31010001"]
    await ensure_institution("H33110001", "丽水市人民医院", 3, "331100")
    for region, codes in (("310000", ["H31010001"]), ("330100", ["H33010001", "H33010002"]), ("331000", [])):
        found = await client.get("/api/v1/hospitals", params={"region": region}, headers=patient.headers)
        assert [h["code"] for h in found.json()["items"]] == codes, region  # 331000 is not 3311xx
    assert departments["items"][0]["name"] == "心血管内科"
    chief, attending = doctors.json()["items"]
    assert (chief["title"], chief["fee_fen"], attending["fee_fen"]) == ("CHIEF", 5000, 1500)
    assert [s["period"] for s in chief["sessions"]] == ["MORNING"]
    assert [s["period"] for s in attending["sessions"]] == ["AFTERNOON"]
    first = chief["sessions"][0]
    assert (first["places_left"], first["capacity"], first["bookable"]) == (20, 20, True)
    assert first["starts_at"] == f"{tomorrow.isoformat()}T08:00:00+08:00"
    await held(client, patient, first["id"])
    again = (await client.get(f"/api/v1/doctors/{chief['id']}/sessions", headers=patient.headers)).json()
    assert again["items"][0]["places_left"] == 19


async def test_lists_come_a_page_at_a_time_by_keyset(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    await publish(client, _week())
    doctor = (await Doctor.select(Doctor.id).where(Doctor.code == "D001").first())["id"]
    url = f"/api/v1/doctors/{doctor}/sessions"

    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = (await client.get(url, params=params, headers=patient.headers)).json()
        seen += [s["date"] for s in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    hospitals = (await client.get("/api/v1/hospitals", params={"limit": 2}, headers=patient.headers)).json()
    rest = await client.get(
        "/api/v1/hospitals", params={"after": hospitals["next_after"]}, headers=patient.headers
    )
    forged = await client.get(url, params={"after": "bm90LWEtY3Vyc29y"}, headers=patient.headers)

    assert seen == sorted(seen) and len(seen) == 5 and len(set(seen)) == 5
    assert len(hospitals["items"]) == 2 and len(rest.json()["items"]) == 1
    assert forged.status_code == 422 and forged.json()["error"]["detail"]["field"] == "after"


BAD = [
    (lambda b: b["sessions"].append(copy.deepcopy(b["sessions"][0])), "sessions[7].code"),
    (lambda b: b["sessions"][1].update(doctor="NOBODY"), "sessions[1].doctor"),
    (
        lambda b: b["sessions"][2].update(date=(china_today() + timedelta(days=30)).isoformat()),
        "sessions[2].date",
    ),
    (lambda b: b["sessions"][0].update(start="12:00", end="08:00"), "sessions[0].end"),
    (lambda b: b["sessions"][0].update(slot_minutes=60, capacity=10), "sessions[0].slot_minutes"),
    (lambda b: b["sessions"][0].update(capacity=-1), "sessions[0].capacity"),
    (lambda b: b["sessions"][0].update(capacity="30"), "sessions[0].capacity"),
    (lambda b: b["sessions"][0].update(start="8:00"), "sessions[0].start"),
    (lambda b: b["sessions"][0].update(period="NIGHT"), "sessions[0].period"),
    (lambda b: b["doctors"][0].update(department="NOPE"), "doctors[0].department"),
    (lambda b: b["doctors"][1].update(title="RESIDENT"), "doctors[1].title"),
    (lambda b: b["doctors"].append(dict(b["doctors"][0])), "doctors[2].code"),
    (lambda b: b["fees"][0].update(fee_fen=0), "fees[0].fee_fen"),
    (lambda b: b["fees"][0].update(fee_fen=1.5), "fees[0].fee_fen"),
    (lambda b: b.update(to=(china_today() - timedelta(days=3)).isoformat()), "to"),
    (lambda b: b.update({"from": "0001-01-01", "to": "0001-01-05"}), "from"),
    (lambda b: b["departments"][0].update(extra=1), "departments[0].extra"),
]


@pytest.mark.parametrize(("spoil", "field"), BAD, ids=[field for _, field in BAD])
async def test_a_bad_field_is_named_and_nothing_is_written(client, spoil, field):
    body = _week()
    spoil(body)

    answer = await client.put("/api/v1/partner/schedules", json=body, headers=await his(client))

    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["detail"]["field"] == field
    assert await ClinicSession.count() == 0 and await Doctor.count() == 0 and await Department.count() == 0


async def test_a_booked_session_keeps_its_places_and_its_time(client, sandbox_http, settings):
    patient, other = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    body = _week(capacity=5)
    await publish(client, body)
    session_id = (await session_ids(client, patient))["D001"][0]
    await held(client, patient, session_id)
    await held(client, other, session_id)

    lower = copy.deepcopy(body)
    lower["sessions"][0]["capacity"] = 1
    moved = copy.deepcopy(body)
    moved["sessions"][0]["start"] = "09:00"
    headers = await his(client)
    too_few = await client.put("/api/v1/partner/schedules", json=lower, headers=headers)
    shifted = await client.put("/api/v1/partner/schedules", json=moved, headers=headers)
    body["sessions"][0]["capacity"] = 2
    fits = await client.put("/api/v1/partner/schedules", json=body, headers=headers)

    assert too_few.status_code == 409 and too_few.json()["error"]["code"] == "CAPACITY_BELOW_BOOKED"
    assert too_few.json()["error"]["detail"] == {"field": "sessions[0].capacity", "booked": 2}
    assert shifted.status_code == 409 and shifted.json()["error"]["code"] == "SESSION_HAS_BOOKINGS"
    assert fits.status_code == 200 and fits.json()["sessions_updated"] == 1
    row = await ClinicSession.select(ClinicSession.capacity, ClinicSession.booked).where(
        ClinicSession.id == session_id
    )
    assert row == [{"capacity": 2, "booked": 2}]


async def test_publishing_needs_the_bookings_scope(client):
    billing_only = bearer(await partner_token(client, "hospital", ["bills:write"], "H33010001"))

    refused = await client.put("/api/v1/partner/schedules", json=_week(), headers=billing_only)
    anonymous = await client.put("/api/v1/partner/schedules", json=_week())

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert anonymous.status_code == 401
    assert await ClinicSession.count() == 0


async def test_browsing_unknown_things_is_404_and_bad_queries_name_their_field(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    await publish(client, _week())
    doctor = (await Doctor.select(Doctor.id).first())["id"]

    answers = {
        "hospital": await client.get("/api/v1/hospitals/99999/departments", headers=patient.headers),
        "department": await client.get("/api/v1/departments/99999/doctors", headers=patient.headers),
        "doctor": await client.get("/api/v1/doctors/99999/sessions", headers=patient.headers),
        "date": await client.get(
            f"/api/v1/doctors/{doctor}/sessions?from=2026-13-01", headers=patient.headers
        ),
        "span": await client.get(
            f"/api/v1/doctors/{doctor}/sessions?from=2026-01-01&to=2026-06-01", headers=patient.headers
        ),
        "region": await client.get("/api/v1/hospitals?region=zj", headers=patient.headers),
        "year 9999": await client.get(
            f"/api/v1/doctors/{doctor}/sessions?from=9999-12-30&to=9999-12-31", headers=patient.headers
        ),
        "year 1": await client.get(
            f"/api/v1/doctors/{doctor}/sessions?from=0001-01-01", headers=patient.headers
        ),
        "cursor": await client.get(
            "/api/v1/hospitals", params={"after": _cursor_of(2**40)}, headers=patient.headers
        ),
    }

    assert [answers[k].status_code for k in ("hospital", "department", "doctor")] == [404, 404, 404]
    assert answers["date"].status_code == 400 and answers["date"].json()["error"]["detail"]["field"] == "from"
    assert answers["span"].status_code == 422 and answers["span"].json()["error"]["detail"]["field"] == "to"
    assert (
        answers["region"].status_code == 400
        and answers["region"].json()["error"]["detail"]["field"] == "region"
    )
    for name, field in (("year 9999", "from"), ("year 1", "from"), ("cursor", "after")):
        assert answers[name].status_code == 422, (name, answers[name].text)
        assert answers[name].json()["error"]["detail"]["field"] == field


def _cursor_of(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")
