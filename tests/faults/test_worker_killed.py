"""A real worker process (`arq workers.main.WorkerSettings`) SIGKILLed in the middle of each kind of
background work: delivering a notification, confirming a paid appointment, expiring an unpaid
hold. Each is stopped at a statement another session's lock holds up, proven stuck there, killed,
and its claims left to lapse; the worker that runs next finishes the work: nothing lost, nothing
done twice. (Asking the bank to disburse: tests/credit/test_worker_killed_disbursing.py.)"""

from __future__ import annotations

import uuid

import pytest

from backend.billing import cash
from backend.billing.tables import Bill
from backend.booking.tables import Appointment, ClinicSession
from backend.ledger.tables import Journal
from backend.notify.tables import Notification, SubscriptionGrant
from backend.platform import outbox
from backend.platform.tables import OutboxMessage
from tests import servers
from tests.billing.factories import Insured, insured_patient, pay, payer_pays, post_notification
from tests.booking.arrange import book, expire_now, held, one_session, pay_fee, places_left, show
from tests.faults.conftest import due_now, holding, lapse, until
from tests.helpers import Client, bearer, login, sandbox_calls, subscribe
from tests.notify.arrange import PAY, delivered, paid, user_id_of

pytestmark = pytest.mark.processes


# -- delivering a notification ---------------------------------------------------------------


async def subscriber(client: Client, sandbox_http: Client, settings) -> tuple[dict, int]:
    """A patient who accepted the payment template twice: (tokens, user id). With two one-time
    grants the platform would take a second send too, so a message sent twice would show."""
    await sandbox_http.delete("/wechat/_sandbox/messages")
    user = f"user-{uuid.uuid4().hex[:10]}"
    tokens = await login(client, sandbox_http, settings, user=user)
    for _ in range(2):
        await subscribe(client, sandbox_http, settings, tokens, {PAY: "accept"}, user=user)
    return tokens, await user_id_of(tokens, client)


async def delivery(client: Client, tokens: dict) -> str:
    """The notification's delivery status as the patient's inbox shows it."""
    inbox = (await client.get("/api/v1/notifications", headers=bearer(tokens["access_token"]))).json()
    [item] = inbox["items"]
    return str(item["delivery"])


async def one_time_grants() -> int:
    return int((await SubscriptionGrant.select(SubscriptionGrant.one_time).first())["one_time"])


async def test_a_worker_killed_before_the_platform_was_asked_leaves_the_message_to_be_sent_once(
    client, sandbox_http, settings, runtime, run_worker
):
    tokens, user_id = await subscriber(client, sandbox_http, settings)
    message_id = await paid(user_id)
    assert message_id is not None
    # Another session holds the patient's grants: the delivery waits to spend one, not yet sending.
    grants = "SELECT 1 FROM subscription_grant WHERE user_id = $1 FOR UPDATE"
    async with holding(settings.database.url, grants, user_id) as lock:
        await outbox.send(runtime.redis, [message_id])
        worker = servers.arq_worker(settings)
        try:
            stuck = await lock.blocked('FROM "subscription_grant"')
        finally:
            worker.kill()  # SIGKILL: no cleanup of any kind
            worker.wait(10)
        await lock.release()
        await lock.ended(stuck)
    assert await delivery(client, tokens) == "pending"
    assert await sandbox_calls(sandbox_http, "wechat", "subscribe_send") == []

    await lapse(runtime)
    await run_worker()

    assert len(await delivered(sandbox_http)) == 1
    assert len(await sandbox_calls(sandbox_http, "wechat", "subscribe_send")) == 1
    assert await delivery(client, tokens) == "delivered"
    assert await one_time_grants() == 1  # one of the two spent, once


async def test_a_worker_killed_while_the_platform_answers_leaves_one_message_marked_unconfirmed(
    client, sandbox_http, settings, runtime, run_worker, urls
):
    tokens, user_id = await subscriber(client, sandbox_http, settings)
    message_id = await paid(user_id)
    assert message_id is not None
    # The platform shows the message and answers; its answer is lost on the way back, and the
    # worker, which would wait 30 s for it, is killed waiting.
    send = "POST /wechat/cgi-bin/message/subscribe/send"
    with servers.relay(urls["sandbox"], send) as relay:
        await outbox.send(runtime.redis, [message_id])
        env = {**servers.WAITING_FOR_AN_ANSWER, "MEDPAY_SANDBOX_PORT": str(relay.port)}
        worker = servers.arq_worker(settings, env)
        try:
            await until(relay.lost, "the platform's answer to the send")
        finally:
            worker.kill()
            worker.wait(10)
    assert await delivery(client, tokens) == "sending"  # the answer never reached the worker
    assert len(await delivered(sandbox_http)) == 1  # the send the platform got

    await lapse(runtime)
    await run_worker()

    # It may have been shown (it was): never sent again, and left for what it is.
    assert len(await delivered(sandbox_http)) == 1
    assert len(await sandbox_calls(sandbox_http, "wechat", "subscribe_send")) == 1
    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row == {"status": "unconfirmed", "last_error": "sending was interrupted"}
    assert await delivery(client, tokens) == "unconfirmed"
    assert await one_time_grants() == 1
    message = await OutboxMessage.select(OutboxMessage.done_at).where(OutboxMessage.id == message_id).first()
    assert message["done_at"] is not None


# -- confirming a paid appointment -----------------------------------------------------------


async def session_row(session_id: int) -> dict:
    row = await ClinicSession.select(ClinicSession.booked, ClinicSession.numbered).where(
        ClinicSession.id == session_id
    )
    return row[0]


async def test_a_worker_killed_while_confirming_an_appointment_leaves_it_to_be_confirmed_once(
    client, sandbox_http, settings, runtime, run_worker
):
    patient, other = [await insured_patient(client, sandbox_http, settings) for _ in range(2)]
    session_id = await one_session(client, patient, capacity=3)
    appointment = await held(client, patient, session_id)
    started = await pay(
        client, patient, appointment["bill_id"], cash_method="wechat", use_personal_account=False
    )
    assert started.json()["state"] == "PAYING"
    notification = await payer_pays(sandbox_http, "wechat", started.json()["out_trade_no"])
    # Another session holds the appointment's session row: the worker applying the payment pays
    # the bill, then waits there to draw the queue number, inside the transaction that confirms.
    row_lock = "SELECT 1 FROM booking_session WHERE id = $1 FOR UPDATE"
    async with holding(settings.database.url, row_lock, session_id) as lock:
        assert (await post_notification(client, "wechat", notification)).status_code in (200, 204)
        worker = servers.arq_worker(settings)
        try:
            stuck = await lock.blocked("numbered = numbered + 1")
        finally:
            worker.kill()
            worker.wait(10)
        await lock.release()
        await lock.ended(stuck)
    assert (await show(client, patient, appointment["id"]))["state"] == "HELD"
    assert await bill_state(appointment["bill_id"]) == "PAYING"

    await lapse(runtime)
    await run_worker()

    confirmed = await show(client, patient, appointment["id"])
    assert (confirmed["state"], confirmed["queue_no"]) == ("CONFIRMED", 1)
    assert await bill_state(appointment["bill_id"]) == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    assert await Notification.count().where(Notification.template == "appointment_booked") == 1
    assert await Notification.count().where(Notification.template == "payment_succeeded") == 1
    assert await session_row(session_id) == {"booked": 1, "numbered": 1}
    # The next appointment paid takes the next number: none was drawn by the killed attempt.
    second = await pay_fee(client, sandbox_http, other, await held(client, other, session_id), run_worker)
    assert (second["state"], second["queue_no"]) == ("CONFIRMED", 2)
    assert await places_left(client, patient, session_id) == 1


async def bill_state(bill_id: str) -> str:
    return str((await Bill.select(Bill.state).where(Bill.id == uuid.UUID(bill_id)).first())["state"])


# -- expiring an unpaid hold -----------------------------------------------------------------


async def test_a_worker_killed_while_expiring_a_hold_leaves_its_place_to_be_given_back_once(
    client, sandbox_http, settings, runtime, run_worker
):
    patients: list[Insured] = [await insured_patient(client, sandbox_http, settings) for _ in range(4)]
    late, keeping, newcomer, too_late = patients
    session_id = await one_session(client, late, capacity=2)
    expiring = await held(client, late, session_id)
    await held(client, keeping, session_id)
    # Its payment window passes: the bill's expiry job comes due (the bill sweeper, run as the
    # worker starts, enqueues it if Redis lost it).
    await expire_now(expiring["id"])
    await due_now(runtime, f"bill-expiry:{expiring['bill_id']}")
    # Another session holds the session row: the worker closes the bill and expires the hold,
    # then waits there to give the place back, inside the transaction that expires it.
    row_lock = "SELECT 1 FROM booking_session WHERE id = $1 FOR UPDATE"
    async with holding(settings.database.url, row_lock, session_id) as lock:
        worker = servers.arq_worker(settings)
        try:
            stuck = await lock.blocked("booked = booked - 1")
        finally:
            worker.kill()
            worker.wait(10)
        await lock.release()
        await lock.ended(stuck)
    assert (await show(client, late, expiring["id"]))["state"] == "HELD"
    assert await bill_state(expiring["bill_id"]) == "CREATED"
    assert (await session_row(session_id))["booked"] == 2

    await lapse(runtime)
    await run_worker()

    ended = await show(client, late, expiring["id"])
    assert (ended["state"], ended["ended_reason"]) == ("EXPIRED", "expired unpaid")
    assert await bill_state(expiring["bill_id"]) == "CLOSED"
    assert (await session_row(session_id))["booked"] == 1
    assert await places_left(client, late, session_id) == 1
    # Expiring it again (a repeated job, the sweeper) gives nothing back a second time.
    assert await cash.expire(runtime, uuid.UUID(expiring["bill_id"])) == "already CLOSED"
    assert (await session_row(session_id))["booked"] == 1
    # The one freed place is there to book, once.
    assert (await book(client, newcomer, session_id)).status_code == 201
    full = await book(client, too_late, session_id)
    assert (full.status_code, full.json()["error"]["code"]) == (409, "SESSION_FULL")
    assert await Appointment.count().where(Appointment.session_id == session_id) == 3
