"""Bills: created by a hospital's system for a patient it identified, read by that patient."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.billing import jobs, records
from backend.billing.parties import CHINA
from backend.billing.schemas import (
    BillCreate,
    BillPage,
    BillRead,
    BillSummary,
    InstitutionRead,
    ItemRead,
    RefundRead,
)
from backend.billing.tables import Bill, BillItem, BillState, Refund
from backend.ecert import service as ecert
from backend.family import service as family
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.oauth.service import Partner
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Forbidden, NotFound
from backend.platform.runtime import Runtime
from backend.platform.schemas import MAX_FEN

log = structlog.get_logger(__name__)

MAX_TOTAL_FEN = MAX_FEN


def _field_error(field: str, message: str) -> AppError:
    return AppError(message, code="VALIDATION_ERROR", status_code=422, detail={"field": field})


async def create(
    rt: Runtime, partner: Partner, request: BillCreate, request_key: str | None = None
) -> BillRead:
    """Create a bill; created before under `request_key` (a repeat after a failure), that bill."""
    if request_key is not None and (existing := await _created_under(partner, request_key)) is not None:
        return await read(rt, existing)
    if (request.visit_token is None) == (request.cert_no is None):
        raise _field_error("visit_token", "name the patient by exactly one of visit_token or cert_no")
    institution = await hospitals.of_partner(partner.institution_code)
    if request.visit_token is not None:
        visit_id, insured_id = await ecert.visit_for_bill(request.visit_token, partner)
    else:
        assert request.cert_no is not None
        visit_id, insured_id = None, await ecert.insured_by_cert_no(request.cert_no)
        await _require_recent_visit(rt, insured_id, institution)
    lines = [
        ItemRead(
            line_no=line_no,
            code=item.code,
            name=item.name,
            category=item.category,
            quantity=item.quantity,
            unit_price_fen=item.unit_price_fen,
            amount_fen=item.quantity * item.unit_price_fen,
        )
        for line_no, item in enumerate(request.items, start=1)
    ]
    total = sum(line.amount_fen for line in lines)
    if total > MAX_TOTAL_FEN:
        raise _field_error("items", f"a bill may total at most {MAX_TOTAL_FEN} fen")
    now = datetime.now(UTC)
    bill_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=rt.settings.billing.ttl_seconds)
    for attempt in range(3):
        bill_no = f"B{now.astimezone(CHINA):%Y%m%d}{secrets.randbelow(10**10):010d}"
        try:
            async with DB.transaction():
                await Bill.insert(
                    Bill(
                        id=bill_id,
                        bill_no=bill_no,
                        institution_id=institution.id,
                        insured_id=insured_id,
                        visit_id=visit_id,
                        created_by=partner.client_id,
                        request_key=request_key,
                        order_type=request.order_type,
                        state=BillState.CREATED,
                        total_fen=total,
                        created_at=now,
                        expires_at=expires_at,
                        updated_at=now,
                    )
                )
                await BillItem.insert(
                    *(BillItem(bill_id=bill_id, **msgspec.structs.asdict(line)) for line in lines)
                )
            break
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "created_once" and request_key is not None:
                # The same key's first request created it a moment ago: that bill is the answer.
                existing = await _created_under(partner, request_key)
                assert existing is not None
                return await read(rt, existing)
            if "bill_no" not in (exc.constraint_name or "") or attempt == 2:
                raise
            # Two bills of one day drew the same random number: draw again.
    await schedule_expiry(rt, bill_id, expires_at)
    log.info("bill created", bill_id=str(bill_id), total_fen=total, institution=institution.code)
    person = await ecert.insured_person(insured_id)
    return BillRead(  # as `read` would find it, without reading back what was just written
        id=bill_id,
        bill_no=bill_no,
        state=BillState.CREATED,
        order_type=request.order_type,
        institution=InstitutionRead(code=institution.code, name=institution.name, level=institution.level),
        patient=person.masked,
        total_fen=total,
        items=lines,
        fund_fen=None,
        personal_account_fen=None,
        family_account_fen=0,
        cash_fen=None,
        cash_method=None,
        refunded_fen=0,
        refunds=[],
        pay_url=pay_url(rt, bill_id),
        created_at=now,
        expires_at=expires_at,
        paid_at=None,
    )


async def _require_recent_visit(rt: Runtime, insured_id: int, institution: Institution) -> None:
    """Fund supervision: a bill rests on the patient's presence. Named by e-certificate number
    alone, the patient must have been identified at this institution within the window."""
    days = rt.settings.billing.visit_window_days
    if not await ecert.has_visited(insured_id, institution.id, datetime.now(UTC) - timedelta(days=days)):
        raise Forbidden(
            f"this patient has no visit at this institution in the last {days} days: "
            "decode their e-certificate QR code or check their face, and bill the visit_token",
            code="NO_RECENT_VISIT",
            detail={"field": "cert_no", "window_days": days},
        )


async def _created_under(partner: Partner, request_key: str) -> uuid.UUID | None:
    row = (
        await Bill.select(Bill.id)
        .where((Bill.created_by == partner.client_id) & (Bill.request_key == request_key))
        .first()
    )
    return row["id"] if row else None


async def schedule_expiry(rt: Runtime, bill_id: uuid.UUID, at: datetime) -> None:
    """A deferred job closes the bill when it expires; the sweeper catches any Redis loses."""
    await jobs.EXPIRE_BILL.enqueue(rt, str(bill_id), defer_until=at)


# -- reading -------------------------------------------------------------------------------


async def owned_bill(patient: Patient, bill_id: uuid.UUID) -> bool:
    """Passes if this patient may see the bill: True when it is their own, False when a relative's
    in their care; 404 otherwise, never another person's data."""
    row = await Bill.select(Bill.insured_id).where(Bill.id == bill_id).first()
    return await owned(patient, None if row is None else row["insured_id"])


async def owned(patient: Patient, insured_id: int | None) -> bool:
    """`owned_bill` for a bill already read (None: there is no such bill)."""
    own = None if insured_id is None else await family.may_act_for(patient.user_id, insured_id)
    if own is None:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    return own


async def partner_bill(partner: Partner, bill_id: uuid.UUID) -> None:
    """Passes if the bill belongs to the partner's institution; 404 otherwise."""
    institution = await hospitals.find(partner.institution_code) if partner.institution_code else None
    row = await Bill.select(Bill.institution_id).where(Bill.id == bill_id).first()
    if row is None or institution is None or row["institution_id"] != institution.id:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")


async def read(rt: Runtime, bill_id: uuid.UUID) -> BillRead:
    bill = await records.bill(bill_id)
    if bill is None:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    institution = await hospitals.get(bill.institution_id)
    person = await ecert.insured_person(bill.insured_id)
    items = await BillItem.select().where(BillItem.bill_id == bill_id).order_by(BillItem.line_no)
    refunds = await Refund.select().where(Refund.bill_id == bill_id).order_by(Refund.created_at)
    return BillRead(
        id=bill.id,
        bill_no=bill.bill_no,
        state=bill.state,
        order_type=bill.order_type,
        institution=InstitutionRead(code=institution.code, name=institution.name, level=institution.level),
        patient=person.masked,
        total_fen=bill.total_fen,
        items=[
            ItemRead(
                line_no=i["line_no"],
                code=i["code"],
                name=i["name"],
                category=i["category"],
                quantity=i["quantity"],
                unit_price_fen=i["unit_price_fen"],
                amount_fen=i["amount_fen"],
            )
            for i in items
        ],
        fund_fen=bill.fund_fen,
        personal_account_fen=bill.personal_account_fen,
        family_account_fen=bill.family_account_fen,
        cash_fen=bill.cash_fen,
        cash_method=bill.cash_method,
        refunded_fen=bill.refunded_fen,
        refunds=[refund_read(r) for r in refunds],
        pay_url=pay_url(rt, bill.id),
        created_at=bill.created_at,
        expires_at=bill.expires_at,
        paid_at=bill.paid_at,
    )


def refund_read(row: dict[str, Any]) -> RefundRead:
    return RefundRead(
        id=row["id"],
        bill_id=row["bill_id"],
        amount_fen=row["amount_fen"],
        fund_fen=row["fund_fen"],
        personal_account_fen=row["personal_account_fen"],
        family_account_fen=row["family_account_fen"],
        cash_fen=row["cash_fen"],
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


def pay_url(rt: Runtime, bill_id: uuid.UUID) -> str:
    """The link the bill's QR code holds; the mini-program opens it on the bill's page."""
    return f"{rt.settings.app.base_url}/mp/bill/{bill_id}"


async def list_for(patient: Patient, limit: int, before: datetime | None) -> BillPage:
    """The bills of the patient and of the relatives they manage, newest first."""
    insured = await family.in_care_of(patient.user_id)
    if not insured:
        return BillPage(items=[], next_before=None)
    query = Bill.select(
        Bill.id,
        Bill.bill_no,
        Bill.state,
        Bill.order_type,
        Bill.total_fen,
        Bill.created_at,
        Bill.institution_id,
    ).where(Bill.insured_id.is_in(insured))
    if before is not None:
        query = query.where(Bill.created_at < before)
    rows = await query.order_by(Bill.created_at, ascending=False).limit(limit + 1)
    institutions = await hospitals.named({row["institution_id"] for row in rows[:limit]})
    page = [
        BillSummary(
            id=row["id"],
            bill_no=row["bill_no"],
            state=row["state"],
            order_type=row["order_type"],
            institution=institutions[row["institution_id"]].name,
            total_fen=row["total_fen"],
            created_at=row["created_at"],
        )
        for row in rows[:limit]
    ]
    return BillPage(items=page, next_before=page[-1].created_at if len(rows) > limit else None)
