"""Subscribe messages through the sandbox platforms: consent, delivery, at most once."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from arq.constants import in_progress_key_prefix

from backend.notify import service
from backend.notify.tables import Notification, SubscriptionGrant
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.tables import OutboxMessage
from tests import servers
from tests.helpers import Client, bearer, inject_fault, login, sandbox_calls, subscribe

PAY = "wxtpl-pay-success"


async def paid(user_id: int, bill: int = 1, amount_fen: int = 12850) -> int | None:
    """What the billing service does when a bill is paid: notify inside its transaction."""
    params = {
        "hospital": "杭州市第一人民医院",
        "amount_fen": amount_fen,
        "at": "2026-11-22T09:30:00+08:00",
        "bill_no": f"B{bill:06d}",
        "bill_id": bill,
    }
    async with DB.transaction():
        return await service.notify(user_id, "payment_succeeded", f"bill:{bill}", "paid", params)


async def user_id_of(tokens, client: Client) -> int:
    return (await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))).json()["id"]


async def delivered(sandbox_http, platform: str = "wechat") -> list[dict]:
    return (await sandbox_http.get(f"/{platform}/_sandbox/messages")).json()


@pytest.fixture(autouse=True)
async def clean_platforms(sandbox_http, runtime) -> None:
    for platform in ("wechat", "alipay"):
        await sandbox_http.delete(f"/{platform}/_sandbox/messages")


@pytest.fixture
async def alice(client: Client, sandbox_http, settings) -> dict:
    tokens = await login(client, sandbox_http, settings, user="alice")
    return {"tokens": tokens, "id": await user_id_of(tokens, client)}


async def send(runtime, message_id: int | None) -> None:
    assert message_id is not None
    await outbox.send(runtime.redis, [message_id])


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


async def test_without_a_grant_the_message_stays_in_the_inbox(
    client: Client, sandbox_http, runtime, run_worker, alice
) -> None:
    await send(runtime, await paid(alice["id"]))
    await run_worker()

    assert await delivered(sandbox_http) == []
    assert (await Notification.select(Notification.status).first())["status"] == "inbox_only"


async def test_one_time_grants_are_counted_and_spent(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    for _ in range(2):
        grants = await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    assert grants["payment_succeeded"]["one_time"] == 2
    rejected = await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "reject"})
    assert rejected["payment_succeeded"]["one_time"] == 2

    for bill in (1, 2, 3):
        await send(runtime, await paid(alice["id"], bill))
        await run_worker()

    assert len(await delivered(sandbox_http)) == 2
    statuses = await Notification.select(Notification.status).order_by(Notification.id)
    assert [s["status"] for s in statuses] == ["delivered", "delivered", "inbox_only"]


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


async def test_unknown_template_ids_are_refused_with_the_field(client: Client, alice) -> None:
    answer = await client.post(
        "/api/v1/notifications/subscriptions",
        json={"results": {"wxtpl-nope": "accept"}},
        headers=bearer(alice["tokens"]["access_token"]),
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["detail"]["field"] == "results"
    bad = await client.post(
        "/api/v1/notifications/subscriptions",
        json={"results": {PAY: "maybe"}},
        headers=bearer(alice["tokens"]["access_token"]),
    )
    assert bad.status_code == 400


async def test_the_inbox_pages_newest_first_and_marks_read(client: Client, sandbox_http, settings, alice):
    for bill in range(1, 6):
        await paid(alice["id"], bill)
    other = await login(client, sandbox_http, settings, user="mallory")
    auth = bearer(alice["tokens"]["access_token"])

    first = (await client.get("/api/v1/notifications?limit=2", headers=auth)).json()
    second = (
        await client.get(f"/api/v1/notifications?limit=2&before_id={first['next_before_id']}", headers=auth)
    ).json()
    last = (
        await client.get(f"/api/v1/notifications?limit=2&before_id={second['next_before_id']}", headers=auth)
    ).json()

    ids = [n["id"] for page in (first, second, last) for n in page["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5
    assert last["next_before_id"] is None
    assert first["unread"] == 5
    assert (await client.post(f"/api/v1/notifications/{ids[0]}/read", headers=auth)).status_code == 204
    theirs = await client.post(f"/api/v1/notifications/{ids[1]}/read", headers=bearer(other["access_token"]))
    assert theirs.status_code == 404
    assert (await client.post("/api/v1/notifications/read-all", headers=auth)).json() == {"marked": 4}
    assert (await client.get("/api/v1/notifications?limit=0", headers=auth)).status_code == 400


async def test_templates_preview_with_sample_data(client: Client) -> None:
    wechat = await client.get("/api/v1/notification-templates/credit_approved/preview?channel=wechat")
    alipay = await client.get("/api/v1/notification-templates/credit_approved/preview?channel=alipay")
    every = await client.get("/api/v1/notification-templates")

    assert wechat.json()["data"] == {
        "amount1": {"value": "5000.00元"},
        "number2": {"value": "49"},
        "thing3": {"value": "示范银行"},
    }
    assert alipay.json()["data"]["keyword1"] == {"value": "5000.00元"}
    assert wechat.json()["inbox_text"] == "示范银行已为您开通信用就医额度5000.00元，最长免息49天。"
    assert len(every.json()) == 9
    assert (await client.get("/api/v1/notification-templates/nope/preview")).status_code == 404


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


async def test_a_ban_takes_every_grant_away_and_stays(
    client: Client, sandbox_http, settings, runtime, run_worker, alice
) -> None:
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})
    await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "accept"})

    grants = await subscribe(client, sandbox_http, settings, alice["tokens"], {PAY: "ban"})
    await send(runtime, await paid(alice["id"]))
    await run_worker()

    assert grants["payment_succeeded"]["one_time"] == 0
    assert await delivered(sandbox_http) == []
    assert (await Notification.select(Notification.status).first())["status"] == "inbox_only"


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


def test_bad_params_fail_the_caller_not_the_job() -> None:
    from backend.notify.templates import TEMPLATES

    payment = TEMPLATES["payment_succeeded"]
    good = payment.sample
    with pytest.raises(TypeError):
        payment.render({**good, "amount_fen": 12.5})
    with pytest.raises(ValueError, match="zone"):
        payment.render({**good, "at": "2026-11-22T09:30:00"})
    with pytest.raises(KeyError):
        payment.render({k: v for k, v in good.items() if k != "bill_id"})


async def test_ids_beyond_the_column_are_400(client: Client, alice) -> None:
    auth = bearer(alice["tokens"]["access_token"])
    assert (await client.get("/api/v1/notifications?before_id=2147483648", headers=auth)).status_code == 400
    assert (await client.post("/api/v1/notifications/2147483648/read", headers=auth)).status_code == 400
