"""Applying for a credit line, with consent to the product's terms, and the bank's decision."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg
import structlog

from backend.auth.service import Patient
from backend.credit import banks, lines, views
from backend.credit.banks import BankRecord
from backend.credit.schemas import ApplicationCreate, LineApproved, LineDeclined, LineRead
from backend.credit.tables import CreditLine, LineStatus
from backend.ecert import service as ecert
from backend.ecert.people import not_bound
from backend.notify import service as notify
from backend.partners.bank import BankRefusal
from backend.piccolo_conf import DB
from backend.platform import outbox
from backend.platform.errors import AppError, Conflict, NotFound, PartnerUnavailable
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def apply(rt: Runtime, patient: Patient, request: ApplicationCreate, request_key: str) -> LineRead:
    """Record the consent and the application, then ask the bank; it decides by callback."""
    existing = await CreditLine.select(CreditLine.id).where(
        (CreditLine.user_id == patient.user_id) & (CreditLine.request_key == request_key)
    )
    if existing:  # the same request again, after a failure: ask the bank again
        await _ask(rt, existing[0]["id"])
        return await views.line(existing[0]["id"])
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        raise not_bound()
    product = await banks.product(request.product_id)
    if product is None or not product.active:
        raise NotFound(
            "no such credit product", code="CREDIT_PRODUCT_NOT_FOUND", detail={"field": "product_id"}
        )
    if not request.consent.accepted:
        raise AppError(
            "the terms must be accepted to apply",
            code="CONSENT_REQUIRED",
            status_code=422,
            detail={"field": "consent.accepted"},
        )
    if request.consent.terms_version != product.terms_version:
        raise Conflict(
            f"the terms are now version {product.terms_version}: read and accept them",
            code="TERMS_OUTDATED",
            detail={"field": "consent.terms_version", "terms_version": product.terms_version},
        )
    line_id = uuid.uuid4()
    now = datetime.now(UTC)
    try:
        async with DB.transaction():
            await CreditLine.insert(
                CreditLine(
                    id=line_id,
                    product_id=product.id,
                    bank_id=product.bank_id,
                    insured_id=insured[0],
                    user_id=patient.user_id,
                    status=LineStatus.APPLIED,
                    terms_version=product.terms_version,
                    terms_digest=hashlib.sha256(product.terms_text.encode()).hexdigest(),
                    consented_at=now,
                    applied_at=now,
                    request_key=request_key,
                )
            )
    except asyncpg.UniqueViolationError:
        live = await CreditLine.select(CreditLine.status).where(
            (CreditLine.insured_id == insured[0])
            & (CreditLine.product_id == product.id)
            & CreditLine.status.is_in(list(lines.LIVE))
        )
        raise Conflict(
            "there is already a credit line of this product for this person",
            code="CREDIT_LINE_EXISTS",
            detail={"field": "product_id", "status": live[0]["status"] if live else None},
        ) from None
    log.info("credit line applied for", line_id=str(line_id), product_id=product.id)
    await _ask(rt, line_id)
    return await views.line(line_id)


async def _ask(rt: Runtime, line_id: uuid.UUID) -> str:
    """Send the application (again: its id is the bank's key). Unanswered ones are re-sent by
    the sweeper."""
    line = await CreditLine.select().where(CreditLine.id == line_id).first()
    if line is None or line["status"] != LineStatus.APPLIED:
        return "decided"
    product = await banks.product(line["product_id"])
    assert product is not None
    lender = await banks.bank_by_id(line["bank_id"])
    person = await ecert.insured_person(line["insured_id"])
    body = {
        "application_id": str(line_id),
        "product_code": product.code,
        "applicant": {
            # A stable pseudonym: the bank learns who applies from its own KYC, not from us.
            "ref": rt.vault.digest(f"credit-applicant:{line['insured_id']}")[:32],
            "region_code": person.region_code,
            "insurance_type": person.insurance_type,
            "age": await ecert.age_of(rt.vault, line["insured_id"], lines.china_today()),
        },
        "requested_limit_fen": product.limit_fen,
    }
    try:
        await rt.partners.bank.apply(lender.api_base, body)
    except PartnerUnavailable:
        log.warning("credit application left for the sweeper", line_id=str(line_id))
        return "deferred"
    except BankRefusal as refusal:
        await _decide_declined(rt, lender, line_id, refusal.code)
        return "refused"
    return "sent"


async def resend(rt: Runtime, line_id: str) -> str:
    return await _ask(rt, uuid.UUID(line_id))


async def approved(rt: Runtime, lender: BankRecord, event: LineApproved) -> str:
    line = await CreditLine.select().where(CreditLine.id == event.application_id).first()
    if line is None or line["bank_id"] != lender.id:
        return "flagged: no such application at this bank"
    product = await banks.product(line["product_id"])
    assert product is not None
    if event.limit_fen > product.limit_fen:
        return f"flagged: a limit of {event.limit_fen} fen is above the product's {product.limit_fen}"
    messages: list[int] = []
    async with DB.transaction():
        decided = await CreditLine.raw(
            """
            UPDATE credit_line SET status = 'ACTIVE', limit_fen = {}, bank_line_ref = {}, expires_on = {},
                   decided_at = now()
            WHERE id = {} AND status = 'APPLIED' RETURNING user_id
            """,
            event.limit_fen,
            event.line_ref,
            event.expires_on,
            event.application_id,
        )
        if not decided:
            return "already decided"
        message = await notify.notify(
            decided[0]["user_id"],
            "credit_approved",
            f"credit_line:{event.application_id}",
            "approved",
            {
                "limit_fen": event.limit_fen,
                "interest_free_days": product.interest_free_days,
                "bank": lender.name,
            },
        )
        messages += [message] if message is not None else []
    await outbox.send(rt.redis, messages)
    log.info("credit line approved", line_id=str(event.application_id), limit_fen=event.limit_fen)
    return "approved"


async def declined(rt: Runtime, lender: BankRecord, event: LineDeclined) -> str:
    line = await CreditLine.select(CreditLine.bank_id).where(CreditLine.id == event.application_id).first()
    if line is None or line["bank_id"] != lender.id:
        return "flagged: no such application at this bank"
    return await _decide_declined(rt, lender, event.application_id, event.reason)


async def _decide_declined(rt: Runtime, lender: BankRecord, line_id: uuid.UUID, reason: str) -> str:
    messages: list[int] = []
    async with DB.transaction():
        decided = await CreditLine.raw(
            "UPDATE credit_line SET status = 'DECLINED', decline_reason = {}, decided_at = now() "
            "WHERE id = {} AND status = 'APPLIED' RETURNING user_id",
            reason[:100],
            line_id,
        )
        if not decided:
            return "already decided"
        message = await notify.notify(
            decided[0]["user_id"],
            "credit_declined",
            f"credit_line:{line_id}",
            "declined",
            {"bank": lender.name, "reason": DECLINE_REASONS.get(reason, "暂不符合申请条件")},
        )
        messages += [message] if message is not None else []
    await outbox.send(rt.redis, messages)
    log.info("credit line declined", line_id=str(line_id), reason=reason)
    return "declined"


# How a bank's reasons read to the patient.
DECLINE_REASONS = {
    "AGE_BELOW_MINIMUM": "未达到申请年龄",
    "INSURANCE_TYPE_NOT_SERVED": "暂不支持该参保类型",
}


async def unanswered(older_than_seconds: int, limit: int = 200) -> list[uuid.UUID]:
    """For the sweeper: applications the bank has not decided (it may never have got them)."""
    rows = await CreditLine.raw(
        "SELECT id FROM credit_line WHERE status = 'APPLIED' "
        "AND applied_at < now() - make_interval(secs => {}) ORDER BY applied_at LIMIT {}",
        older_than_seconds,
        limit,
    )
    return [row["id"] for row in rows]
