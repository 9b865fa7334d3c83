"""Arrange steps for booking: a hospital publishing its schedule, patients holding and paying."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from backend.billing.tables import Bill
from backend.booking.tables import Appointment
from tests.billing.factories import Insured, key, pay, payer_pays, post_notification
from tests.helpers import bearer, partner_token

Client = httpx.AsyncClient
CHINA = ZoneInfo("Asia/Shanghai")
_codes = itertools.count(1)

FEES = [
    {
        "title": "CHIEF",
        "fee_fen": 5000,
        "item_code": "REG003",
        "item_name": "主任医师诊查费",
        "category": "A",
    },
    {
        "title": "ATTENDING",
        "fee_fen": 1500,
        "item_code": "REG001",
        "item_name": "普通门诊诊查费",
        "category": "C",
    },
]


def china_today() -> date:
    return datetime.now(UTC).astimezone(CHINA).date()


async def his(client: Client, institution: str = "H33010001") -> dict[str, str]:
    """A hospital information system's token for publishing schedules."""
    return bearer(await partner_token(client, "hospital", ["bookings:write"], institution))


async def terminal(client: Client, institution: str = "H33010001") -> dict[str, str]:
    return bearer(await partner_token(client, "terminal", ["ecert:decode", "bookings:check-in"], institution))


def session(
    doctor: str = "D001",
    day: date | None = None,
    *,
    start: str = "08:00",
    end: str = "12:00",
    capacity: int = 30,
    period: str = "MORNING",
    code: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    day = day or china_today() + timedelta(days=1)
    return {
        "code": code or f"S{next(_codes):05d}",
        "doctor": doctor,
        "date": day.isoformat(),
        "period": period,
        "start": start,
        "end": end,
        "capacity": capacity,
        **extra,
    }


def schedule(sessions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One department with a chief physician (D001) and an attending one (D002), and sessions."""
    days = [date.fromisoformat(s["date"]) for s in sessions] or [china_today()]
    return {
        "from": min(days).isoformat(),
        "to": max(days).isoformat(),
        "fees": [dict(fee) for fee in FEES],
        "departments": [{"code": "CARD", "name": "心血管内科", "intro": "冠心病、高血压"}],
        "doctors": [
            {"code": "D001", "department": "CARD", "name": "王建国", "title": "CHIEF", "specialty": "冠心病"},
            {"code": "D002", "department": "CARD", "name": "李敏", "title": "ATTENDING"},
        ],
        "sessions": sessions,
        **extra,
    }


async def publish(
    client: Client, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    answer = await client.put("/api/v1/partner/schedules", json=body, headers=headers or await his(client))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def session_ids(client: Client, patient: Insured, day: date | None = None) -> dict[str, list[int]]:
    """Browse as the patient would: the first hospital's cardiology, each doctor's sessions."""
    hospitals = (await client.get("/api/v1/hospitals?q=第一人民", headers=patient.headers)).json()["items"]
    departments = await client.get(
        f"/api/v1/hospitals/{hospitals[0]['id']}/departments", headers=patient.headers
    )
    department = departments.json()["items"][0]["id"]
    doctors = (await client.get(f"/api/v1/departments/{department}/doctors", headers=patient.headers)).json()
    found: dict[str, list[int]] = {}
    for doctor in doctors["items"]:
        params = {"to": (china_today() + timedelta(days=14)).isoformat()}
        if day is not None:
            params = {"from": day.isoformat(), "to": day.isoformat()}
        sessions = await client.get(
            f"/api/v1/doctors/{doctor['id']}/sessions", params=params, headers=patient.headers
        )
        found[doctor["code"]] = [s["id"] for s in sessions.json()["items"]]
    return found


async def one_session(client: Client, patient: Insured, **kwargs: Any) -> int:
    """A published session (of the chief physician D001 unless `doctor`); its id."""
    body = schedule([session(**kwargs)])
    await publish(client, body)
    return (await session_ids(client, patient))[kwargs.get("doctor", "D001")][0]


async def book(client: Client, patient: Insured, session_id: int, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/appointments", json={"session_id": session_id, **body}, headers={**patient.headers, **key()}
    )


async def held(client: Client, patient: Insured, session_id: int, **body: Any) -> dict[str, Any]:
    answer = await book(client, patient, session_id, **body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "HELD"
    appointment: dict[str, Any] = answer.json()
    return appointment


async def pay_fee(
    client: Client, sandbox: Client, patient: Insured, appointment: dict[str, Any], run_worker: Any
) -> dict[str, Any]:
    """Pay the registration bill through the pay flow, its cash part by the patient's channel."""
    started = await pay(
        client, patient, appointment["bill_id"], cash_method=patient.channel, use_personal_account=False
    )
    assert started.status_code == 200, started.text
    if started.json()["state"] == "PAYING":
        notification = await payer_pays(sandbox, patient.channel, started.json()["out_trade_no"])
        assert (await post_notification(client, patient.channel, notification)).status_code in (200, 204)
    await run_worker()
    return await show(client, patient, appointment["id"])


async def show(client: Client, patient: Insured, appointment_id: str) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/appointments/{appointment_id}", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def cancel(client: Client, patient: Insured, appointment_id: str) -> httpx.Response:
    return await client.post(
        f"/api/v1/appointments/{appointment_id}/cancel", headers={**patient.headers, **key()}
    )


async def places_left(client: Client, patient: Insured, session_id: int) -> int:
    doctor = (await Appointment.raw("SELECT doctor_id FROM booking_session WHERE id = {}", session_id))[0][
        "doctor_id"
    ]
    sessions = await client.get(
        f"/api/v1/doctors/{doctor}/sessions",
        params={
            "from": (china_today() - timedelta(days=1)).isoformat(),
            "to": (china_today() + timedelta(days=20)).isoformat(),
        },
        headers=patient.headers,
    )
    return next(s["places_left"] for s in sessions.json()["items"] if s["id"] == session_id)


async def expire_now(appointment_id: str) -> None:
    """Move a hold's payment window (its bill's expiry) into the past, as time passing would."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    row = (
        await Appointment.select(Appointment.bill_id)
        .where(Appointment.id == uuid.UUID(appointment_id))
        .first()
    )
    assert row is not None
    await Bill.update({Bill.expires_at: past}).where(Bill.id == row["bill_id"])
    await Appointment.update({Appointment.expires_at: past}).where(
        Appointment.id == uuid.UUID(appointment_id)
    )


async def running_now(
    session_id: int, *, started: timedelta = timedelta(minutes=5), ends_in: timedelta = timedelta(hours=1)
) -> None:
    """Move a session booked ahead of time to today, begun `started` ago, as time passing would."""
    now = datetime.now(UTC)
    await Appointment.raw(
        "UPDATE booking_session SET day = {}, starts_at = {}, ends_at = {} WHERE id = {}",
        china_today(),
        now - started,
        now + ends_in,
        session_id,
    )
    await Appointment.raw("UPDATE appointment SET day = {} WHERE session_id = {}", china_today(), session_id)
