"""Subscribe messages delivered through the sandbox platforms: once, at most, whatever fails."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from arq.constants import in_progress_key_prefix

from backend.notify import service
from backend.notify.tables import Notification, SubscriptionGrant
from backend.platform import outbox
from backend.platform.tables import OutboxMessage
from tests import servers
from tests.helpers import Client, bearer, inject_fault, login, sandbox_calls, subscribe
from tests.notify.arrange import PAY, delivered, paid, send, user_id_of


async def test_a_granted_message_is_delivered_once_and_kept_in_the_inbox(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    grants = await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    assert grants["payment_succeeded"]["one_time"] == 1

    await send(runtime, await paid(alice["id"]))
    await run_worker()

    [message] = await delivered(sandbox_http)
    assert message["template_id"] == PAY
    assert message["page"] == "pages/bill/detail?id=1"
    assert message["data"] == {
        "thing1": {"value": "杭州市第一人民医院"},
        "amount2": {"value": "128.50元"},
        "time3": {"value": "2026-11-22 09:30"},
        "character_string4": {"value": "B000001"},
    }
    inbox = (
        await client.get("/api/v1/notifications", headers=bearer(alice["tokens"]["access_token"]))
    ).json()
    assert inbox["unread"] == 1
    assert inbox["items"][0]["delivery"] == "delivered"
    assert (
        inbox["items"][0]["body"]
        == "您在杭州市第一人民医院的账单B000001已缴费成功，金额128.50元，时间2026-11-22 09:30。"
    )
    grant = await SubscriptionGrant.select().first()
    assert grant["one_time"] == 0


async def test_the_same_milestone_is_recorded_once_even_when_enqueued_at_once(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})

    messages = await asyncio.gather(*(paid(alice["id"]) for _ in range(10)))
    await outbox.send(runtime.redis, [m for m in messages if m is not None])
    await run_worker()

    assert sum(m is not None for m in messages) == 1
    assert len(await delivered(sandbox_http)) == 1


async def test_a_duplicated_job_delivers_once(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    message_id = await paid(alice["id"])
    for job in ("a", "b", "c"):
        await runtime.redis.enqueue_job(outbox.JOB, message_id, _job_id=f"dup-{job}")

    await run_worker()
    await service.deliver(runtime, (await Notification.select(Notification.id).first())["id"])

    assert len(await delivered(sandbox_http)) == 1
    assert (await SubscriptionGrant.select().first())["one_time"] == 1


async def test_the_access_token_is_fetched_once_cached_and_refreshed_early(sandbox_http, runtime) -> None:
    wechat = runtime.partners.wechat

    tokens = await asyncio.gather(*(wechat.access_token(runtime.redis) for _ in range(20)))

    assert len(set(tokens)) == 1
    assert len(await sandbox_calls(sandbox_http, "wechat", "token")) == 1
    ttl = await runtime.redis.ttl(f"wechat:access_token:{runtime.settings.wechat.appid}")
    assert 6800 < ttl <= 7200 - 300  # refreshed five minutes before the platform's expiry
    await wechat.access_token(runtime.redis)
    assert len(await sandbox_calls(sandbox_http, "wechat", "token")) == 1


@pytest.mark.parametrize("errcode", [40001, 42001])
async def test_a_refused_token_is_replaced_and_the_message_delivered(
    client: Client, sandbox_http, settings, runtime, run_worker, alice, errcode
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await runtime.partners.wechat.access_token(runtime.redis)
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", errcode=errcode, times=1)

    await send(runtime, await paid(alice["id"]))
    await run_worker()

    assert len(await delivered(sandbox_http)) == 1
    assert len(await sandbox_calls(sandbox_http, "wechat", "token")) == 2


@pytest.mark.parametrize(
    "fault", [{"http_status": 500}, {"errcode": -1}, {"http_status": 503, "delay_ms": 100}]
)
async def test_transient_failures_retry_with_backoff_then_deliver(
    client: Client, sandbox_http, settings, runtime, run_worker, alice, fault
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", times=1, **fault)

    await send(runtime, await paid(alice["id"]))
    worker = await run_worker()

    assert worker.jobs_retried == 1
    assert len(await delivered(sandbox_http)) == 1
    row = await Notification.select(Notification.status, Notification.attempts).first()
    assert row == {"status": "delivered", "attempts": 2}


async def test_a_timeout_is_never_resent(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    # The platform takes longer than we wait, and delivers all the same.
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", delay_ms=2500, times=1)

    await send(runtime, await paid(alice["id"]))
    await run_worker()
    await asyncio.sleep(0.8)

    assert len(await delivered(sandbox_http)) == 1
    assert (await Notification.select(Notification.status).first())["status"] == "unconfirmed"


@pytest.mark.parametrize(("errcode", "grant_left"), [(43101, 0), (47003, 1)])
async def test_permanent_refusals_stop_and_are_marked(
    client: Client, sandbox_http, settings, runtime, run_worker, alice, errcode, grant_left
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", errcode=errcode, times=1)

    await send(runtime, await paid(alice["id"]))
    worker = await run_worker()

    assert worker.jobs_retried == 0
    assert await delivered(sandbox_http) == []
    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row["status"] == "failed"
    assert str(errcode) in row["last_error"]
    # Refused: the platform holds no grant, so neither do we. Rejected: the grant was not used.
    assert (await SubscriptionGrant.select().first())["one_time"] == grant_left


async def test_alipay_template_messages(client: Client, sandbox_http, settings, runtime, run_worker):
    tokens = await login(client, sandbox_http, settings, channel="alipay", user="bob")
    user = await user_id_of(tokens, client)
    await subscribe(
        client, sandbox_http, settings, tokens, {"alitpl-pay-success": "accept"}, channel="alipay", user="bob"
    )

    await send(runtime, await paid(user, 1))
    await send(runtime, await paid(user, 2))
    await run_worker()

    [message] = await delivered(sandbox_http, "alipay")
    assert message["template_id"] == "alitpl-pay-success"
    statuses = sorted(s["status"] for s in await Notification.select(Notification.status))
    assert statuses == ["delivered", "inbox_only"]


async def test_alipay_says_the_user_did_not_subscribe(
    client: Client, sandbox_http, settings, runtime, run_worker
):
    tokens = await login(client, sandbox_http, settings, channel="alipay", user="carl")
    user = await user_id_of(tokens, client)
    # Our record says yes; the platform's says no (the grant was spent elsewhere).
    await SubscriptionGrant.insert(
        SubscriptionGrant(
            user_id=user,
            template="payment_succeeded",
            one_time=1,
            updated_at=datetime.now(UTC),
        )
    )
    await send(runtime, await paid(user))
    await run_worker()

    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row == {"status": "failed", "last_error": "USER_NOT_SUBSCRIBED"}


async def test_a_worker_killed_mid_delivery_leaves_exactly_one_message(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", delay_ms=1500, times=1)
    message_id = await paid(alice["id"])
    await send(runtime, message_id)
    worker = servers.arq_worker(settings)
    try:
        for _ in range(400):  # until the worker is inside the platform call
            row = await Notification.select(Notification.status).first()
            if row["status"] == "sending":
                break
            await asyncio.sleep(0.05)
        assert row["status"] == "sending"
        await asyncio.sleep(0.5)  # the request is on its way: the platform takes 1.5 s to answer
    finally:
        worker.kill()
        worker.wait(10)
    await asyncio.sleep(2)  # the platform finishes the request it was given

    # The dead worker's outbox lease and arq's in-progress marker lapse; the job runs again.
    await OutboxMessage.update(
        {OutboxMessage.locked_until: datetime.now(UTC) - timedelta(seconds=1)}, force=True
    )
    await runtime.redis.delete(f"{in_progress_key_prefix}{outbox.job_id(message_id)}")
    await run_worker()

    assert len(await delivered(sandbox_http)) == 1
    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row == {"status": "unconfirmed", "last_error": "sending was interrupted"}


async def test_a_gateway_error_may_have_been_delivered_so_it_is_not_resent(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await inject_fault(sandbox_http, partner="wechat", api="subscribe_send", http_status=502, times=1)

    await send(runtime, await paid(alice["id"]))
    worker = await run_worker()

    assert worker.jobs_retried == 0
    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row == {"status": "unconfirmed", "last_error": "HTTP 502"}


async def test_a_notification_whose_job_gives_up_ends_failed(
    client: Client, sandbox_http, settings, runtime, run_worker, alice, monkeypatch
) -> None:
    from workers import outbox as jobs

    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    # Our credentials are refused: no token, so the job fails before claiming the message.
    await inject_fault(sandbox_http, partner="wechat", api="token", errcode=40125, times=1)
    monkeypatch.setattr(jobs, "MAX_ATTEMPTS", 1)

    await send(runtime, await paid(alice["id"]))
    await run_worker()

    row = await Notification.select(Notification.status, Notification.last_error).first()
    assert row["status"] == "failed"
    assert "access-token" in row["last_error"]
    assert (await SubscriptionGrant.select().first())["one_time"] == 1  # never spent
