"""Bills: created by a hospital's system, read by their patient, pre-settled before paying."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from backend.auth.service import Patient
from backend.billing import jobs, policy
from backend.billing.schemas import (
    BillCreate,
    BillPage,
    BillRead,
    BillSummary,
    InstitutionRead,
    ItemRead,
    ItemSplitRead,
    PolicyRead,
    PresettleRead,
    RefundRead,
)
from backend.billing.settlement import Item, Split, presettle
from backend.billing.tables import Bill, BillItem, Refund
from backend.ecert import service as ecert
from backend.ecert.service import InsuredPerson
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.ledger import service as ledger
from backend.notify import service as notify
from backend.oauth.service import Partner
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Forbidden, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
MAX_TOTAL_FEN = 10**12


def _field_error(field: str, message: str) -> AppError:
    return AppError(message, code="VALIDATION_ERROR", status_code=422, detail={"field": field})


def policy_year(now: datetime | None = None) -> int:
    """Insurance years follow the calendar in China's time zone."""
    return (now or datetime.now(UTC)).astimezone(CHINA).year


async def partner_institution(partner: Partner) -> Institution:
    institution = await hospitals.find(partner.institution_code) if partner.institution_code else None
    if institution is None:
        raise Forbidden("this client is not registered for an institution", code="NO_INSTITUTION")
    return institution


async def create(
    rt: Runtime, partner: Partner, request: BillCreate, request_key: str | None = None
) -> BillRead:
    """Create a bill; created before under `request_key` (a repeat after a failure), that bill."""
    if request_key is not None and (existing := await _created_under(partner, request_key)) is not None:
        return await read(rt, existing)
    if (request.visit_token is None) == (request.cert_no is None):
        raise _field_error("visit_token", "name the patient by exactly one of visit_token or cert_no")
    institution = await partner_institution(partner)
    if request.visit_token is not None:
        visit_id, insured_id = await ecert.visit_for_bill(request.visit_token, partner)
    else:
        assert request.cert_no is not None
        visit_id, insured_id = None, await ecert.insured_by_cert_no(request.cert_no)
        await _require_recent_visit(rt, insured_id, institution)
    total = sum(item.quantity * item.unit_price_fen for item in request.items)
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
                        state="CREATED",
                        total_fen=total,
                        created_at=now,
                        expires_at=expires_at,
                        updated_at=now,
                    )
                )
                await BillItem.insert(
                    *(
                        BillItem(
                            bill_id=bill_id,
                            line_no=line_no,
                            code=item.code,
                            name=item.name,
                            category=item.category,
                            quantity=item.quantity,
                            unit_price_fen=item.unit_price_fen,
                            amount_fen=item.quantity * item.unit_price_fen,
                        )
                        for line_no, item in enumerate(request.items, start=1)
                    )
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
        state="CREATED",
        order_type=request.order_type,
        institution=InstitutionRead(code=institution.code, name=institution.name, level=institution.level),
        patient=person.masked,
        total_fen=total,
        items=[
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
        ],
        fund_fen=None,
        personal_account_fen=None,
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


async def owned_bill(patient: Patient, bill_id: uuid.UUID) -> dict[str, Any]:
    """The bill if this patient may see it; 404 otherwise, never another person's data."""
    row = await Bill.select(Bill.id, Bill.insured_id, Bill.state).where(Bill.id == bill_id).first()
    if row is None or row["insured_id"] not in await ecert.insured_of_user(patient.user_id):
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    return row


async def partner_bill(partner: Partner, bill_id: uuid.UUID) -> dict[str, Any]:
    """The bill if it belongs to the partner's institution; 404 otherwise."""
    institution = await hospitals.find(partner.institution_code) if partner.institution_code else None
    row = await Bill.select(Bill.id, Bill.state, Bill.institution_id).where(Bill.id == bill_id).first()
    if row is None or institution is None or row["institution_id"] != institution.id:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    return row


async def read(rt: Runtime, bill_id: uuid.UUID) -> BillRead:
    bill = await Bill.select().where(Bill.id == bill_id).first()
    if bill is None:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    institution = await hospitals.get(bill["institution_id"])
    person = await ecert.insured_person(bill["insured_id"])
    items = await BillItem.select().where(BillItem.bill_id == bill_id).order_by(BillItem.line_no)
    refunds = await Refund.select().where(Refund.bill_id == bill_id).order_by(Refund.created_at)
    return BillRead(
        id=bill["id"],
        bill_no=bill["bill_no"],
        state=bill["state"],
        order_type=bill["order_type"],
        institution=InstitutionRead(code=institution.code, name=institution.name, level=institution.level),
        patient=person.masked,
        total_fen=bill["total_fen"],
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
        fund_fen=bill["fund_fen"],
        personal_account_fen=bill["personal_account_fen"],
        cash_fen=bill["cash_fen"],
        cash_method=bill["cash_method"],
        refunded_fen=bill["refunded_fen"],
        refunds=[refund_read(r) for r in refunds],
        pay_url=pay_url(rt, bill["id"]),
        created_at=bill["created_at"],
        expires_at=bill["expires_at"],
        paid_at=bill["paid_at"],
    )


def refund_read(row: dict[str, Any]) -> RefundRead:
    return RefundRead(
        id=row["id"],
        bill_id=row["bill_id"],
        amount_fen=row["amount_fen"],
        fund_fen=row["fund_fen"],
        personal_account_fen=row["personal_account_fen"],
        cash_fen=row["cash_fen"],
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


def pay_url(rt: Runtime, bill_id: uuid.UUID) -> str:
    """The link the bill's QR code holds; the mini-program opens it on the bill's page."""
    return f"{rt.settings.app.base_url}/mp/bill/{bill_id}"


async def list_for(patient: Patient, limit: int, before: datetime | None) -> BillPage:
    insured = await ecert.insured_of_user(patient.user_id)
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


# -- pre-settlement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Parties:
    """Who a bill is between, read once per transaction: the insured person and the hospital."""

    person: InsuredPerson
    institution: Institution


async def parties_of(bill: dict[str, Any]) -> Parties:
    return Parties(
        await ecert.insured_person(bill["insured_id"]), await hospitals.get(bill["institution_id"])
    )


async def split_for(
    bill: dict[str, Any], parties: Parties, use_personal_account: bool, year: int, *, lock: bool
) -> tuple[Split, int]:
    """The bill's split under its person's policy and usage: (split, personal account balance).

    With `lock`, the usage and personal account rows stay locked until the caller commits, so
    concurrent payments of one person are settled one after another against fresh balances.
    """
    person, institution = parties.person, parties.institution
    rules = await policy.policy_for(person.region_code, person.insurance_type, year)
    usage = await policy.usage(bill["insured_id"], year, lock=lock)
    balance = 0
    if rules.personal_account_pays:
        code = ledger.personal_account(bill["insured_id"])
        if lock:
            await ledger.open_personal_account(
                bill["insured_id"],
                policy.pooling_region(person.region_code),
                person.opening_balance_fen,
            )
            balance = await ledger.locked_balance(code)
        else:
            balance = await ledger.balance(code, default=person.opening_balance_fen)
    items = (
        await BillItem.select(
            BillItem.code, BillItem.name, BillItem.category, BillItem.quantity, BillItem.unit_price_fen
        )
        .where(BillItem.bill_id == bill["id"])
        .order_by(BillItem.line_no)
    )
    split = presettle(
        rules,
        institution.level,
        usage,
        [Item(**item) for item in items],
        balance if use_personal_account else 0,
    )
    return split, balance


async def presettle_bill(patient: Patient, bill_id: uuid.UUID, use_personal_account: bool) -> PresettleRead:
    await owned_bill(patient, bill_id)
    bill = await Bill.select().where(Bill.id == bill_id).first()
    assert bill is not None
    if bill["state"] != "CREATED":
        raise AppError(
            f"the bill is {bill['state']}; only an unpaid bill is pre-settled",
            code="BILL_NOT_PAYABLE",
            status_code=409,
            detail={"state": bill["state"]},
        )
    parties = await parties_of(bill)
    split, balance = await split_for(bill, parties, use_personal_account, policy_year(), lock=False)
    person = parties.person
    return PresettleRead(
        total_fen=split.total_fen,
        fund_fen=split.fund_fen,
        personal_account_fen=split.personal_account_fen,
        cash_fen=split.cash_fen,
        personal_account_balance_fen=balance,
        policy=PolicyRead(
            region_code=policy.pooling_region(person.region_code),
            insurance_type=person.insurance_type,
            year=policy_year(),
        ),
        items=[item_split_read(s) for s in split.items],
    )


def item_split_read(split: Any) -> ItemSplitRead:
    fields = asdict(split)
    return ItemSplitRead(**fields)


# -- shared by payment and refunds ----------------------------------------------------------


async def post_parts(
    kind: str,
    reference: str,
    bill: dict[str, Any],
    parties: Parties,
    *,
    fund_fen: int = 0,
    personal_account_fen: int = 0,
    cash_fen: int = 0,
    giving_back: bool = False,
) -> None:
    """Post parts of a bill moving from their payers to the hospital (or back, `giving_back`)."""
    person, institution = parties.person, parties.institution
    region = policy.pooling_region(person.region_code)
    sign = -1 if giving_back else 1
    total = fund_fen + personal_account_fen + cash_fen
    lines = [
        (ledger.hospital_receivable(institution.code), sign * total),
        (ledger.fund_pool(region, person.insurance_type), -sign * fund_fen),
        (ledger.personal_account(bill["insured_id"]), -sign * personal_account_fen),
    ]
    if cash_fen:
        lines.append((ledger.channel_clearing(bill["cash_method"]), -sign * cash_fen))
    await ledger.post(kind, reference, lines)


async def notify_patients(
    bill: dict[str, Any], parties: Parties, template: str, milestone: str, at: datetime, **params: Any
) -> list[int]:
    """Tell every user bound to the bill's patient, once per milestone; outbox ids to send."""
    institution = parties.institution
    messages = []
    for user_id in await ecert.users_of_insured(bill["insured_id"]):
        message = await notify.notify(
            user_id,
            template,
            f"bill:{bill['id']}",
            milestone,
            {
                "hospital": institution.name,
                "at": at.astimezone(CHINA).isoformat(),
                "bill_id": str(bill["id"]),
                **params,
            },
        )
        if message is not None:
            messages.append(message)
    return messages
