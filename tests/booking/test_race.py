"""Never overbooked: a crowd racing for one session's places gets exactly its capacity, and a hot
session locks nothing but itself."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from backend.audit import full_audit
from backend.billing import cash
from backend.booking import places
from backend.booking.tables import Appointment, ClinicSession, WaitlistEntry
from backend.piccolo_conf import DB
from tests.billing.factories import Insured, insured_patient, pay
from tests.booking.arrange import (
    book,
    cancel,
    china_today,
    expire_now,
    places_left,
    publish,
    schedule,
    session,
    session_ids,
)


async def crowd(client, sandbox_http, settings, size: int) -> list[Insured]:
    patients: list[Insured] = []
    for start in range(0, size, 50):
        patients += await asyncio.gather(
            *(
                insured_patient(client, sandbox_http, settings, visiting=None)
                for _ in range(start, min(size, start + 50))
            )
        )
    return patients


async def test_five_hundred_patients_racing_for_thirty_places_get_exactly_thirty_holds(
    client, sandbox_http, settings
):
    patients = await crowd(client, sandbox_http, settings, 500)
    await publish(client, schedule([session("D001", capacity=30)]))
    session_id = (await session_ids(client, patients[0]))["D001"][0]

    answers = await asyncio.gather(*(book(client, p, session_id) for p in patients))

    codes = [a.status_code if a.status_code == 201 else a.json()["error"]["code"] for a in answers]
    assert codes.count(201) == 30
    assert codes.count("SESSION_FULL") == 470
    row = await ClinicSession.select(ClinicSession.booked, ClinicSession.capacity).first()
    assert (row["booked"], row["capacity"]) == (30, 30)
    assert await Appointment.count() == 30
    assert await places_left(client, patients[0], session_id) == 0


class RolledBack(Exception):
    pass


async def test_a_hot_session_locked_does_not_hold_up_another(client, sandbox_http, settings):
    first, second = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    day = china_today() + timedelta(days=1)
    await publish(client, schedule([session("D001", day, code="HOT"), session("D002", day, code="COLD")]))
    found = await session_ids(client, first, day)
    hot, cold = found["D001"][0], found["D002"][0]
    taken, release = asyncio.Event(), asyncio.Event()

    async def hold_the_hot_row() -> None:
        """A booking of the hot session in the middle of its transaction, its row locked."""
        try:
            async with DB.transaction():
                assert await places.take(hot)
                taken.set()
                await release.wait()
                raise RolledBack
        except RolledBack:
            pass

    holder = asyncio.create_task(hold_the_hot_row())
    await taken.wait()
    try:
        other = await asyncio.wait_for(book(client, first, cold), timeout=10)
        waiting = asyncio.create_task(book(client, second, hot))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the hot session's next booking waits for its row, as it must
    finally:
        release.set()
        await holder
    assert other.status_code == 201
    assert (await waiting).status_code == 201
    assert await places_left(client, first, hot) == 29


async def test_places_stay_counted_through_bookings_cancels_expiries_payments_and_offers_at_once(
    client, sandbox_http, settings, runtime, run_worker
):
    """Everything at once on one session: the count of places always equals the appointments
    holding one (the audit after the test checks it again), and no place is offered twice."""
    patients = await crowd(client, sandbox_http, settings, 24)
    await publish(client, schedule([session("D001", capacity=8)]))
    session_id = (await session_ids(client, patients[0]))["D001"][0]
    answers = await asyncio.gather(*(book(client, p, session_id) for p in patients))
    holders = [(p, a.json()) for p, a in zip(patients, answers, strict=True) if a.status_code == 201]
    others = [p for p, a in zip(patients, answers, strict=True) if a.status_code != 201]
    assert len(holders) == 8
    await asyncio.gather(
        *(client.post(f"/api/v1/sessions/{session_id}/waitlist", headers=p.headers) for p in others)
    )
    for _, appointment in holders[4:]:
        await expire_now(appointment["id"])

    await asyncio.gather(
        *(cancel(client, p, a["id"]) for p, a in holders[:2]),
        *(pay(client, p, a["bill_id"], use_personal_account=True) for p, a in holders[2:4]),
        *(cash.expire(runtime, uuid.UUID(a["bill_id"])) for _, a in holders[4:]),
        *(book(client, p, session_id) for p in others[:4]),
    )
    await run_worker()

    row = await ClinicSession.select(ClinicSession.booked).first()
    live = await Appointment.count().where(Appointment.state.is_in(["HELD", "CONFIRMED"]))
    assert row["booked"] == live == 8  # every freed place went to someone waiting
    offered = await WaitlistEntry.select(WaitlistEntry.appointment_id).where(WaitlistEntry.state == "OFFERED")
    assert len(offered) == 6 and len({o["appointment_id"] for o in offered}) == 6
    first_six = await WaitlistEntry.select(WaitlistEntry.state).order_by(WaitlistEntry.id).limit(6)
    assert {e["state"] for e in first_six} == {"OFFERED"}  # the first six in line, in order


async def test_the_audit_names_a_session_whose_count_drifted_from_its_appointments(
    client, sandbox_http, settings
):
    patient = await insured_patient(client, sandbox_http, settings)
    await publish(client, schedule([session("D001", capacity=5, code="DRIFT"), session("D002", code="IDLE")]))
    session_id = (await session_ids(client, patient))["D001"][0]
    await book(client, patient, session_id)
    idle = (await ClinicSession.select(ClinicSession.id).where(ClinicSession.code == "IDLE").first())["id"]

    found = {}
    for label, sql in (
        ("forgot one", "UPDATE booking_session SET booked = 0 WHERE id = {}"),
        ("counted one twice", "UPDATE booking_session SET booked = 2 WHERE id = {}"),
    ):
        await ClinicSession.raw(sql, session_id)
        found[label], _ = await full_audit()
    await ClinicSession.raw("UPDATE booking_session SET booked = 1 WHERE id = {}", session_id)
    await ClinicSession.raw("UPDATE booking_session SET booked = 1 WHERE id = {}", idle)  # nobody holds it
    found["a place nobody holds"], _ = await full_audit()
    await ClinicSession.raw("UPDATE booking_session SET booked = 0 WHERE id = {}", idle)

    assert found["forgot one"] == [
        f"session {session_id} (DRIFT): counts 0 of 5 places booked, 1 appointments hold one"
    ]
    assert found["counted one twice"] == [
        f"session {session_id} (DRIFT): counts 2 of 5 places booked, 1 appointments hold one"
    ]
    assert found["a place nobody holds"] == [
        f"session {idle} (IDLE): counts 1 of 30 places booked, 0 appointments hold one"
    ]
