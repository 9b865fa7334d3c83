"""Consent to subscribe messages, the inbox, and the templates' previews."""

import pytest

from backend.notify.tables import Notification
from tests.helpers import Client, bearer, login, subscribe
from tests.notify.arrange import PAY, delivered, paid, send


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
    assert len(every.json()) == 15
    assert (await client.get("/api/v1/notification-templates/nope/preview")).status_code == 404


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
