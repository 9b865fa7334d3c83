"""Every partner on a money or message path timing out, answering 5xx, or answering garbage (the
sandbox's `body` faults, and a WeChat Pay answer whose signature does not verify): the patient or
the hospital gets a clean answer (a 4xx/502/503 error with a stable code, or a 202 left to the
sweeper), or the background work asks again and finishes; the partner holds exactly one order,
refund or message for it; a 5xx met by every try is met by the first call and each of the client's
retries, spaced by the client's wait policy (`backend.partners.http.WAIT`: each wait longer than the
one before, up to a cap), which is tested on its own at the end, not timed. The books are audited
and compared with the sandbox channels after every test (`audited_books`, in this directory's
conftest). The bank's disbursements and refunds: tests/credit/test_partner_faults.py.

A timeout is a `delay_ms` beyond the 2 s client timeout. A delayed call is still served after its
delay, so every count is taken once the late call has landed. Timeouts cost seconds, so they are
tried where a resent request could move money twice: both channels' refunds here, the bank's
disbursement and refund there. Not on opening an order (WeChat Pay's `med-ins` below), on the order
query or the e-certificate check (they change nothing, and their retry is the 5xx's), nor on
Alipay messages (the same in-doubt rule as WeChat's, below).

Covered elsewhere, not repeated here:
- WeChat Pay 5xx and SYSTEM_ERROR once, on `jsapi` and `med-ins`, retried inside the call; 5xx on
  `query` through every retry is 503: tests/partners/test_wechatpay.py. Alipay 502 on create and
  busy on query, retried: tests/partners/test_alipay_trade.py.
- WeChat Pay `med-ins` timing out on every try, the payment resumed with the same order:
  tests/family/test_mutual_aid.py. A query left unanswered by a killed worker:
  tests/billing/test_payment_endings.py.
- WeChat Pay refunds answered 503 until the sweeper sends them again: tests/billing/test_refunds.py,
  tests/billing/test_races_and_failures.py.
- The e-certificate platform's 503 and busy code, retried once: tests/ecert/test_bind.py.
- WeChat subscribe messages: 500, 503 and busy retried with backoff, a timeout and a 502 never
  resent: tests/notify/test_delivery.py; a worker killed mid-send: tests/faults/test_worker_killed.py.
- A message job's own backoff (`min(2**attempts, 300)` s between tries) is not timed here: two
  retries cost 6 s. One retry of it: tests/platform/test_outbox.py, and the Alipay 503 below.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tenacity import AsyncRetrying, RetryCallState

from backend.billing import cash
from backend.billing.jobs import sweep_bills
from backend.billing.tables import Bill, CashPayment, Refund
from backend.ledger.tables import Journal
from backend.notify.tables import Notification
from backend.partners import http
from backend.partners.http import TransientPartnerError
from backend.platform.errors import AppError, PartnerUnavailable
from backend.platform.runtime import Runtime
from backend.settings import Settings
from tests.billing.factories import (
    WITH_CT,
    his_headers,
    insured_patient,
    new_bill,
    paid_in_cash,
    pay,
    payer_pays,
    post_notification,
    refund,
)
from tests.faults.conftest import until
from tests.helpers import Client, bind_ecert, inject_fault, login, sandbox_calls, subscribe
from tests.identities import employee_id
from tests.notify.arrange import paid, send, user_id_of

TIMEOUT = {"delay_ms": 2500}  # the client gives up at 2 s (MEDPAY_PARTNER_TIMEOUT_SECONDS in tests)
EVERY_TRY = "every try"  # `times`: the fault lasts through all of the client's retries
PARTNER = {"wechat": "wechatpay", "alipay": "alipay"}
ALIPAY_SEND = "alipay.open.app.mini.templatemessage.send"
TEMPLATE = {"wechat": "wxtpl-pay-success", "alipay": "alitpl-pay-success"}
UNAVAILABLE, UNUSABLE = "PARTNER_UNAVAILABLE", "PARTNER_ANSWER_UNUSABLE"


async def arm(sandbox: Client, settings: Settings, partner: str, api: str, fault: dict[str, Any]) -> None:
    times = fault.get("times", 1)
    if times == EVERY_TRY:
        times = settings.partner_http.retries + 1
    await inject_fault(sandbox, partner=partner, api=api, **{**fault, "times": times})


async def landed(sandbox: Client, partner: str, api: str, count: int) -> list[dict[str, Any]]:
    """The calls of an API once the sandbox has answered `count` of them (a late one included)."""

    async def enough() -> list[dict[str, Any]] | None:
        found = await sandbox_calls(sandbox, partner, api)
        return found if len(found) >= count else None

    return await until(enough, f"{count} calls of {partner} {api}")


def out_trade_no_of(call: dict[str, Any]) -> str:
    """The order a recorded WeChat Pay or Alipay call was about."""
    body = call["params"].get("body") or call["params"]["biz_content"]
    return str(json.loads(body)["out_trade_no"])


def refused(answer: httpx.Response, status: int, code: str) -> None:
    """A clean refusal: the status, and the error envelope with its stable code."""
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def tried_every_time(calls: list[dict[str, Any]], settings: Settings) -> None:
    """A 5xx lasting through every try met one request's first call and each of the client's
    retries (how far apart: the wait policy, tested by `test_a_partner_call_waits_longer_...`)."""
    failed = [c for c in calls if c["injected"] and c["outcome"].startswith("http:5")]
    assert len(failed) == settings.partner_http.retries + 1, calls


async def channel_order(sandbox: Client, channel: str, out_trade_no: str) -> dict[str, Any]:
    answer = await sandbox.get(f"/_sandbox/pay/{channel}/orders/{out_trade_no}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def checked_by_the_sweeper(runtime: Runtime, run_worker: Any) -> Any:
    """The sweeper finds what has waited past the check delay and a worker runs it."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await Bill.update({Bill.paying_at: long_ago}).where(Bill.state == "PAYING")
    await Refund.update({Refund.created_at: long_ago}).where(Refund.state == "REQUESTED")
    assert await sweep_bills(runtime) >= 1
    return await run_worker()


# -- opening the channel order ---------------------------------------------------------------

CREATE_FAULTS = [
    # (channel, api, fault, the first answer's status and code, calls of the api in the end)
    pytest.param(
        "wechat", "jsapi", {"http_status": 503, "times": EVERY_TRY}, (503, UNAVAILABLE), 4,
        id="wechatpay-jsapi-5xx",
    ),
    pytest.param(
        "wechat", "med-ins", {"body": "truncated"}, (502, UNUSABLE), 2,
        id="wechatpay-med-ins-garbage",
    ),
    pytest.param(
        "alipay", "alipay.trade.create", {"http_status": 502, "times": EVERY_TRY},
        (503, UNAVAILABLE), 4, id="alipay-create-5xx",
    ),
    pytest.param(
        "alipay", "alipay.trade.create", {"body": "html"}, (502, UNUSABLE), 2,
        id="alipay-create-garbage",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("channel", "api", "fault", "first", "calls"), CREATE_FAULTS)
async def test_a_payment_whose_order_failed_to_open_resumes_with_the_same_order(
    client, sandbox_http, settings, run_worker, channel, api, fault, first, calls
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident", channel=channel)
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    await arm(sandbox_http, settings, PARTNER[channel], api, fault)
    key = uuid.uuid4().hex

    answer = await pay(client, patient, bill["id"], key, cash_method=channel)
    again = await pay(client, patient, bill["id"], key, cash_method=channel)  # the patient taps again

    refused(answer, *first)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "PAYING" and again.json()["launch"]
    out_trade_no = again.json()["out_trade_no"]
    asked = await sandbox_calls(sandbox_http, PARTNER[channel], api)
    assert len(asked) == calls
    if fault.get("times") == EVERY_TRY:
        tried_every_time(asked, settings)
    assert {out_trade_no_of(call) for call in asked} == {out_trade_no}  # one order ever asked for
    assert await CashPayment.count() == 1
    order = await channel_order(sandbox_http, channel, out_trade_no)
    assert order["amount_fen"] == again.json()["cash_fen"]
    # The one order is the one the payer pays, and the bill is paid once.
    await post_notification(client, channel, await payer_pays(sandbox_http, channel, out_trade_no))
    await run_worker()
    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1


# -- asking the channel about a payment ------------------------------------------------------

QUERY_FAULTS = [
    # (channel, api, fault, the code the check fails with)
    pytest.param("wechat", "query", {"body": "json"}, UNUSABLE, id="wechatpay-query-garbage"),
    pytest.param(
        "alipay", "alipay.trade.query", {"http_status": 503, "times": EVERY_TRY}, UNAVAILABLE,
        id="alipay-query-5xx",
    ),
    pytest.param(
        "alipay", "alipay.trade.query", {"body": "empty"}, UNUSABLE, id="alipay-query-garbage"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("channel", "api", "fault", "code"), QUERY_FAULTS)
async def test_a_payment_check_the_channel_failed_is_made_again_and_completes_once(
    client, sandbox_http, settings, runtime, run_worker, channel, api, fault, code
):
    patient = await insured_patient(client, sandbox_http, settings, insurance="resident", channel=channel)
    bill = await new_bill(client, await his_headers(client), patient, WITH_CT)
    started = (await pay(client, patient, bill["id"], cash_method=channel)).json()
    await payer_pays(sandbox_http, channel, started["out_trade_no"])  # paid; the notification is lost
    await arm(sandbox_http, settings, PARTNER[channel], api, fault)

    with pytest.raises(AppError) as failed:
        await cash.check(runtime, uuid.UUID(bill["id"]))  # what the payment-check job runs
    assert failed.value.code == code
    assert (await Bill.select(Bill.state).first())["state"] == "PAYING"  # nothing taken for an answer
    await checked_by_the_sweeper(runtime, run_worker)

    assert (await Bill.select(Bill.state).first())["state"] == "PAID"
    assert await Journal.count().where(Journal.kind == "bill.cash_paid") == 1
    asked = await sandbox_calls(sandbox_http, PARTNER[channel], api)
    assert [c["injected"] for c in asked] == [True] * (len(asked) - 1) + [False]
    if fault.get("times") == EVERY_TRY:
        tried_every_time(asked, settings)


# -- refunding through the channel -----------------------------------------------------------

REFUND_FAULTS = [
    # (channel, api, fault, the hospital's answer, calls of the api in the end)
    pytest.param("wechat", "refund", TIMEOUT, 201, 2, id="wechatpay-refund-timeout"),
    pytest.param("wechat", "refund", {"body": "empty"}, 202, 2, id="wechatpay-refund-garbage"),
    pytest.param("wechat", "refund", {"body": "bad_signature"}, 202, 2, id="wechatpay-refund-bad-signature"),
    pytest.param("alipay", "alipay.trade.refund", TIMEOUT, 201, 2, id="alipay-refund-timeout"),
    pytest.param(
        "alipay", "alipay.trade.refund", {"http_status": 502, "times": EVERY_TRY}, 202, 4,
        id="alipay-refund-5xx",
    ),
    pytest.param("alipay", "alipay.trade.refund", {"body": "truncated"}, 202, 2, id="alipay-refund-garbage"),
]  # fmt: skip


@pytest.mark.parametrize(("channel", "api", "fault", "first", "calls"), REFUND_FAULTS)
async def test_a_refund_the_channel_failed_to_answer_is_refunded_once(
    client, sandbox_http, settings, runtime, run_worker, channel, api, fault, first, calls
):
    his, bill, started = await paid_in_cash(client, sandbox_http, settings, run_worker, channel=channel)
    await arm(sandbox_http, settings, PARTNER[channel], api, fault)

    answer = await refund(client, his, bill["id"], amount_fen=7300)

    assert answer.status_code == first, answer.text
    if first == 202:  # the channel could not be heard: the sweeper asks again, same out_refund_no
        assert answer.json()["state"] == "REQUESTED"
        await checked_by_the_sweeper(runtime, run_worker)
    assert (await Refund.select(Refund.state).first())["state"] in ("PROCESSING", "SUCCEEDED")
    asked = await landed(sandbox_http, PARTNER[channel], api, calls)
    assert len(asked) == calls
    if fault.get("times") == EVERY_TRY:
        tried_every_time(asked, settings)
    cash_fen = (await Refund.select(Refund.cash_fen).first())["cash_fen"]  # the cash part's share
    order = await channel_order(sandbox_http, channel, started["out_trade_no"])
    assert [r["amount_fen"] for r in order["refunds"]] == [cash_fen]
    assert order["refunded_fen"] == cash_fen
    assert (await Bill.select(Bill.refunded_fen).first())["refunded_fen"] == 7300
    assert await Journal.count().where(Journal.kind == "bill.refunded") == 1


# -- the e-certificate check -----------------------------------------------------------------

ECERT_FAULTS = [
    pytest.param({"http_status": 502, "times": EVERY_TRY}, (503, UNAVAILABLE), id="5xx"),
    pytest.param({"body": "json"}, (502, "PARTNER_REJECTED"), id="garbage-json"),
]


@pytest.mark.parametrize(("fault", "first"), ECERT_FAULTS)
async def test_a_binding_the_platform_failed_is_refused_cleanly_and_binds_when_repeated(
    client, sandbox_http, settings, fault, first
):
    tokens = await login(client, sandbox_http, settings)
    await arm(sandbox_http, settings, "ecert", "verify_identity", fault)
    id_number = employee_id()

    answer = await bind_ecert(client, tokens, "测试故障", id_number)
    again = await bind_ecert(client, tokens, "测试故障", id_number)

    refused(answer, *first)
    assert answer.json()["error"]["detail"]["partner"] == "ecert"
    assert again.status_code == 200, again.text
    assert again.json()["identity"]["insurance_type"] == "employee"
    if fault.get("times") == EVERY_TRY:
        tried_every_time(await sandbox_calls(sandbox_http, "ecert", "verify_identity"), settings)


# -- messages --------------------------------------------------------------------------------


async def subscriber(client: Client, sandbox: Client, settings: Settings, channel: str) -> int:
    """A patient who accepted the payment template once, on a platform with no message yet."""
    await sandbox.delete(f"/{channel}/_sandbox/messages")
    user = f"user-{uuid.uuid4().hex[:10]}"
    tokens = await login(client, sandbox, settings, channel=channel, user=user)
    await subscribe(
        client, sandbox, settings, tokens, {TEMPLATE[channel]: "accept"}, channel=channel, user=user
    )
    return await user_id_of(tokens, client)


MESSAGE_FAULTS = [
    # (platform, api, fault, how the notification ends, job retries, messages the platform shows)
    pytest.param("wechat", "subscribe_send", {"body": "json"}, "unconfirmed", 0, 1, id="wechat-garbage"),
    pytest.param("alipay", ALIPAY_SEND, {"http_status": 503}, "delivered", 1, 1, id="alipay-5xx"),
    pytest.param("alipay", ALIPAY_SEND, {"http_status": 502}, "unconfirmed", 0, 0, id="alipay-gateway-502"),
    pytest.param("alipay", ALIPAY_SEND, {"body": "html"}, "unconfirmed", 0, 1, id="alipay-garbage"),
]


@pytest.mark.parametrize(("channel", "api", "fault", "status", "retried", "messages"), MESSAGE_FAULTS)
async def test_a_message_is_shown_at_most_once_whatever_the_platform_answers(
    client, sandbox_http, settings, runtime, run_worker, channel, api, fault, status, retried, messages
):
    user_id = await subscriber(client, sandbox_http, settings, channel)
    await arm(sandbox_http, settings, channel, api, fault)

    await send(runtime, await paid(user_id))
    worker = await run_worker()

    # Sent again only when the platform certainly did not take it; else `unconfirmed`, never resent.
    assert worker.jobs_retried == retried
    assert (await Notification.select(Notification.status).first())["status"] == status
    assert len(await sandbox_calls(sandbox_http, channel, api)) == 1 + retried
    assert len((await sandbox_http.get(f"/{channel}/_sandbox/messages")).json()) == messages


# -- the sandbox's garbage --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"partner": "alipay", "api": "alipay.trade.query", "body": "bad_signature"},  # signs in the body
        {"partner": "wechatpay", "api": "refund", "body": "bad_signature", "http_status": 502},
        {"partner": "wechatpay", "api": "refund", "body": "html", "code": "SYSTEM_ERROR"},
        {"partner": "ecert", "api": "verify_identity", "body": "xml"},
    ],
)
async def test_the_sandbox_arms_only_garbage_a_partner_can_give(sandbox_http, fault):
    refused = await sandbox_http.post("/_sandbox/faults", json={"times": 1, **fault})

    assert refused.status_code == 400, refused.text
    assert (await sandbox_http.get("/_sandbox/faults")).json() == []


# -- how far apart a call's tries are ---------------------------------------------------------


def wait_before_retry(after_try: int) -> float:
    """The client's wait (`http.WAIT`) once try number `after_try` of a call has failed."""
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = after_try
    return float(http.WAIT(state))


def test_a_partner_call_waits_longer_before_each_retry_up_to_a_second(settings):
    # The shortest and the longest of many draws of each wait (the jitter is random).
    spans = []
    for after_try in range(1, 12):
        waits = [wait_before_retry(after_try) for _ in range(500)]
        spans.append((min(waits), max(waits)))
    capped = spans.index((1.0, 1.0))  # the first wait at the cap

    # Each wait before the cap is longer than the one before whatever their jitter: its shortest
    # is longer than the other's longest. Every retry a call makes is among them.
    assert spans[0][0] > 0
    assert all(before[1] < after[0] for before, after in itertools.pairwise(spans[: capped + 1]))
    assert capped >= settings.partner_http.retries
    # From the cap on, a second each, however many tries.
    assert all(span == (1.0, 1.0) for span in spans[capped:])


async def test_a_call_failing_every_try_waits_by_that_policy_before_each_retry(settings, monkeypatch):
    policy, waited, tries = http.WAIT, [], []

    def observed(state: RetryCallState) -> float:
        waited.append(state.attempt_number)
        return float(policy(state))

    async def busy() -> None:
        tries.append(len(tries) + 1)
        raise TransientPartnerError("wechatpay", "HTTP 503")

    monkeypatch.setattr(http, "WAIT", observed)
    with pytest.raises(PartnerUnavailable):
        await http.with_retries(settings.partner_http, "wechatpay", busy)

    assert tries == list(range(1, settings.partner_http.retries + 2))
    # Asked after each try that is retried, for that try (tenacity asks after the last one too,
    # and then stops without sleeping).
    assert waited[: len(tries) - 1] == tries[:-1]
