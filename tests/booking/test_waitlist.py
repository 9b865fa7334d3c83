"""The waitlist (候补): freed places go to the first in line, in strict order, each offered once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.billing import cash
from backend.booking import places
from backend.booking.jobs import sweep_booking
from backend.booking.tables import Appointment, ClinicSession, WaitlistEntry
from backend.notify.tables import Notification
from backend.piccolo_conf import DB
from tests.billing.factories import Insured, insured_patient
from tests.booking.arrange import (
    book,
    cancel,
    china_today,
    expire_now,
    held,
    one_session,
    pay_fee,
    places_left,
    publish,
    schedule,
    session,
    session_ids,
    show,
)


async def join(client, patient: Insured, session_id: int) -> Any:
    return await client.post(f"/api/v1/sessions/{session_id}/waitlist", headers=patient.headers)


async def entries(client, patient: Insured) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/waitlist", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def holding() -> int:
    return await Appointment.count().where(Appointment.state.is_in(["HELD", "CONFIRMED"]))


async def test_a_waitlist_of_five_over_two_freed_places(client, sandbox_http, settings, runtime, run_worker):
    a, b = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    waiters = [await insured_patient(client, sandbox_http, settings) for _ in range(5)]
    session_id = await one_session(client, a, capacity=2)
    first_hold, second_hold = await held(client, a, session_id), await held(client, b, session_id)
    joined = [await join(client, w, session_id) for w in waiters]
    assert [j.status_code for j in joined] == [201] * 5
    assert [j.json()["position"] for j in joined] == [1, 2, 3, 4, 5]

    # A's hold lapses: the place goes to the first in line, not back to the public.
    await expire_now(first_hold["id"])
    await cash.expire(runtime, uuid.UUID(first_hold["bill_id"]))
    offered = (await entries(client, waiters[0]))[0]
    assert offered["state"] == "OFFERED" and offered["position"] is None
    offer = await show(client, waiters[0], str(offered["appointment_id"]))
    assert (offer["state"], offer["waitlist_id"]) == ("HELD", offered["id"])
    assert await places_left(client, a, session_id) == 0
    assert (await book(client, a, session_id)).json()["error"]["code"] == "SESSION_FULL"
    # B cancels: the second in line.
    assert (await cancel(client, b, second_hold["id"])).status_code == 200
    second_offer = (await entries(client, waiters[1]))[0]
    assert second_offer["state"] == "OFFERED"
    assert await holding() == 2

    # The first offer is not paid in its window: it passes to the third in line.
    await expire_now(str(offered["appointment_id"]))
    await cash.expire(runtime, uuid.UUID(offer["bill_id"]))
    assert (await entries(client, waiters[0]))[0]["state"] == "LAPSED"
    third_offer = (await entries(client, waiters[2]))[0]
    assert third_offer["state"] == "OFFERED"
    assert await holding() == 2

    for waiter, entry in ((waiters[1], second_offer), (waiters[2], third_offer)):
        appointment = await show(client, waiter, str(entry["appointment_id"]))
        confirmed = await pay_fee(client, sandbox_http, waiter, appointment, run_worker)
        assert confirmed["state"] == "CONFIRMED"
        assert (await entries(client, waiter))[0]["state"] == "BOOKED"

    assert [(await entries(client, w))[0]["position"] for w in waiters[3:]] == [1, 2]
    assert await places_left(client, a, session_id) == 0
    offers = await Notification.select(Notification.user_id).where(
        Notification.template == "appointment_offered"
    )
    assert len(offers) == 3  # three offers, each to one patient once
    assert await WaitlistEntry.count().where(WaitlistEntry.state == "OFFERED") == 0


async def test_joining_a_session_with_places_left_is_refused_and_joining_twice_answers_the_same_place(
    client, sandbox_http, settings
):
    holder, waiter = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, holder, capacity=1)

    early = await join(client, waiter, session_id)
    await held(client, holder, session_id)
    first, again = await join(client, waiter, session_id), await join(client, waiter, session_id)
    own = await join(client, holder, session_id)

    assert early.status_code == 409 and early.json()["error"]["code"] == "SESSION_NOT_FULL"
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert own.status_code == 409 and own.json()["error"]["code"] == "APPOINTMENT_DUPLICATE"
    missing = await client.post("/api/v1/sessions/999999/waitlist", headers=waiter.headers)
    assert missing.status_code == 404


async def test_someone_who_left_the_line_is_passed_over(client, sandbox_http, settings, runtime):
    holder, leaver, stayer = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    session_id = await one_session(client, holder, capacity=1)
    hold = await held(client, holder, session_id)
    left = (await join(client, leaver, session_id)).json()
    await join(client, stayer, session_id)

    gone = await client.delete(f"/api/v1/waitlist/{left['id']}", headers=leaver.headers)
    not_theirs = await client.delete(f"/api/v1/waitlist/{left['id']}", headers=stayer.headers)
    await cancel(client, holder, hold["id"])

    assert gone.status_code == 200 and gone.json()["state"] == "LEFT"
    assert not_theirs.status_code == 404
    assert (await entries(client, stayer))[0]["state"] == "OFFERED"
    assert (await entries(client, leaver))[0]["state"] == "LEFT"


async def test_more_places_published_go_to_the_waitlist_first(client, sandbox_http, settings):
    holder, waiter = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    body = schedule([session("D001", capacity=1, code="GROW")])
    await publish(client, body)
    session_id = await one_session(client, holder, capacity=1, code="GROW")
    await held(client, holder, session_id)
    await join(client, waiter, session_id)

    body["sessions"][0]["capacity"] = 3
    result = await publish(client, body)

    assert result["sessions_updated"] == 1
    assert (await entries(client, waiter))[0]["state"] == "OFFERED"
    assert await places_left(client, holder, session_id) == 1


async def test_a_line_is_joined_only_once_booking_opens_and_closes_when_its_session_begins(
    client, sandbox_http, settings, runtime
):
    holder, waiter = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    far = await one_session(
        client,
        holder,
        capacity=0,
        day=china_today() + timedelta(days=settings.booking.open_days + 2),
        code="FAR",
    )
    session_id = await one_session(client, holder, capacity=1, code="SOON")
    await held(client, holder, session_id)
    await join(client, waiter, session_id)

    early = await join(client, waiter, far)
    await ClinicSession.update({ClinicSession.starts_at: datetime.now(UTC) - timedelta(minutes=1)}).where(
        ClinicSession.id == session_id
    )
    await sweep_booking(runtime)

    assert early.status_code == 409 and early.json()["error"]["code"] == "BOOKING_NOT_OPEN"
    assert (await entries(client, waiter))[0]["state"] == "CLOSED"


async def test_an_offer_meeting_the_waiters_own_booking_of_that_doctor_passes_to_the_next(
    client, sandbox_http, settings
):
    """The first in line books the doctor's afternoon while a morning place frees: the offer's
    insert meets their booking at the unique index, and the place goes to the next in line."""
    holder, first, second = [await insured_patient(client, sandbox_http, settings) for _ in range(3)]
    day = china_today() + timedelta(days=1)
    await publish(
        client,
        schedule(
            [
                session("D001", day, code="AM", capacity=1),
                session("D001", day, code="PM", period="AFTERNOON", start="14:00", end="17:00"),
            ]
        ),
    )
    morning, afternoon = (await session_ids(client, holder, day))["D001"]
    hold = await held(client, holder, morning)
    await join(client, first, morning)
    await join(client, second, morning)
    entry = await WaitlistEntry.select().order_by(WaitlistEntry.id).first()
    booking, commit = asyncio.Event(), asyncio.Event()

    async def first_books_the_afternoon() -> None:
        async with DB.transaction():  # their own booking, not yet committed
            assert await places.take(afternoon)
            where = await places.place(afternoon)
            await places.hold(
                where,
                insured_id=entry["insured_id"],
                user_id=entry["user_id"],
                slot=None,
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            )
            booking.set()
            await commit.wait()

    theirs = asyncio.create_task(first_books_the_afternoon())
    await booking.wait()
    cancelling = asyncio.create_task(cancel(client, holder, hold["id"]))
    await asyncio.sleep(0.3)  # the offer waits on their uncommitted row
    commit.set()
    await theirs
    answer = await cancelling

    assert answer.status_code == 200, answer.text
    assert (await entries(client, first))[0]["state"] == "CLOSED"
    assert (await entries(client, second))[0]["state"] == "OFFERED"
