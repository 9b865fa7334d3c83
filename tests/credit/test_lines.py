"""Applying for a credit line: consent recorded, the bank asked over HTTP, its decision by callback."""

from __future__ import annotations

import hashlib

from backend.credit.tables import CreditLine
from backend.notify.tables import Notification
from tests.billing.factories import insured_patient
from tests.credit.arrange import apply, line_of, products, settle
from tests.helpers import login


async def test_an_approved_line_shows_its_limit_and_the_consent_is_kept(
    client, sandbox_http, settings, bank_http, run_worker
):
    patient = await insured_patient(client, sandbox_http, settings)
    product = (await products(client, patient))[0]
    assert (product["limit_fen"], product["interest_free_days"]) == (500_000, 49)

    applied = await apply(client, patient, product)
    assert applied.status_code == 202, applied.text
    assert applied.json()["status"] == "APPLIED"
    await settle(bank_http, run_worker)

    line = await line_of(client, patient)
    assert (line["status"], line["limit_fen"], line["used_fen"], line["available_fen"]) == (
        "ACTIVE",
        500_000,
        0,
        500_000,
    )
    assert line["expires_on"] is not None and line["drawdowns"] == []
    row = await CreditLine.select().first()
    assert row["terms_version"] == product["terms_version"]
    assert row["terms_digest"] == hashlib.sha256(product["terms_text"].encode()).hexdigest()
    assert row["consented_at"] is not None
    calls = (await bank_http.get("/_bank/calls")).json()
    assert [c["api"] for c in calls if c["status"] == 202][:1] == ["applications"] or calls
    assert await Notification.count().where(Notification.template == "credit_approved") == 1


async def test_a_declined_application_says_why(client, sandbox_http, settings, bank_http, run_worker):
    await bank_http.put("/_bank/rules", json={"min_age": 90})
    patient = await insured_patient(client, sandbox_http, settings)
    assert (await apply(client, patient, (await products(client, patient))[0])).status_code == 202
    await settle(bank_http, run_worker)

    line = await line_of(client, patient)
    assert (line["status"], line["decline_reason"], line["available_fen"]) == (
        "DECLINED",
        "AGE_BELOW_MINIMUM",
        0,
    )
    notice = (
        await Notification.select(Notification.body).where(Notification.template == "credit_declined").first()
    )
    assert "未达到申请年龄" in notice["body"]
    # Declined, the person may apply again.
    assert (await apply(client, patient, (await products(client, patient))[0])).status_code == 202


async def test_an_application_needs_consent_to_the_current_terms(client, sandbox_http, settings):
    patient = await insured_patient(client, sandbox_http, settings)
    product = (await products(client, patient))[0]

    refused = await apply(client, patient, product, accepted=False)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "CONSENT_REQUIRED")
    assert refused.json()["error"]["detail"]["field"] == "consent.accepted"
    outdated = await apply(client, patient, product, terms_version="2020-01")
    assert (outdated.status_code, outdated.json()["error"]["code"]) == (409, "TERMS_OUTDATED")
    assert outdated.json()["error"]["detail"]["terms_version"] == product["terms_version"]
    missing = await apply(client, patient, {**product, "id": 999})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "CREDIT_PRODUCT_NOT_FOUND")
    assert await CreditLine.count() == 0


async def test_one_live_line_per_product_and_a_repeat_replays(client, sandbox_http, settings, bank_http):
    patient = await insured_patient(client, sandbox_http, settings)
    product = (await products(client, patient))[0]

    first = await apply(client, patient, product, key="apply-1")
    again = await apply(client, patient, product, key="apply-1")
    other = await apply(client, patient, product, key="apply-2")

    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert (other.status_code, other.json()["error"]["code"]) == (409, "CREDIT_LINE_EXISTS")
    assert await CreditLine.count() == 1


async def test_without_an_ecertificate_there_is_nothing_to_apply_with(client, sandbox_http, settings):
    tokens = await login(client, sandbox_http, settings, "wechat", "no-ecert")
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Idempotency-Key": "k"}
    answer = await client.post(
        "/api/v1/credit/applications",
        json={"product_id": 1, "consent": {"terms_version": "2026-12", "accepted": True}},
        headers=headers,
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "ECERT_NOT_BOUND")
