"""What bills, payments and refunds share: who a bill is between (read once per transaction),
the bill locked, posting its parts to the ledger, and telling its patients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from backend.billing import policy
from backend.billing.records import BillRecord, as_bill
from backend.billing.tables import Bill
from backend.ecert import service as ecert
from backend.ecert.service import InsuredPerson
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.ledger import service as ledger
from backend.notify import service as notify
from backend.platform.errors import AppError

CHINA = ZoneInfo("Asia/Shanghai")
CHANNELS = ("wechat", "alipay")  # the cash methods a payment channel collects


def policy_year(now: datetime | None = None) -> int:
    """Insurance years follow the calendar in China's time zone."""
    return (now or datetime.now(UTC)).astimezone(CHINA).year


@dataclass(frozen=True)
class Parties:
    """Who a bill is between, read once per transaction: the insured person and the hospital."""

    person: InsuredPerson
    institution: Institution


async def parties_of(bill: BillRecord) -> Parties:
    return Parties(await ecert.insured_person(bill.insured_id), await hospitals.get(bill.institution_id))


async def post_parts(
    kind: str,
    reference: str,
    bill: BillRecord,
    parties: Parties,
    *,
    fund_fen: int = 0,
    personal_account_fen: int = 0,
    family_account_fen: int = 0,
    family_insured_id: int | None = None,
    cash_fen: int = 0,
    cash_account: str | None = None,
    giving_back: bool = False,
) -> None:
    """Post parts of a bill moving from their payers to the hospital (or back, `giving_back`);
    the cash part through `cash_account` (a channel's or a bank's clearing account). Family mutual
    aid from `family_insured_id`'s personal account is a journal of its own kind (`FAMILY_AID`),
    under the same reference, so the books show whose account paid whose bill."""
    person, institution = parties.person, parties.institution
    region = policy.pooling_region(person.region_code)
    receivable = ledger.hospital_receivable(institution.code)
    sign = -1 if giving_back else 1
    total = fund_fen + personal_account_fen + cash_fen
    lines = [
        (receivable, sign * total),
        (ledger.fund_pool(region, person.insurance_type), -sign * fund_fen),
        (ledger.personal_account(bill.insured_id), -sign * personal_account_fen),
    ]
    if cash_fen:
        assert cash_account, "a cash part names the account it moves through"
        lines.append((cash_account, -sign * cash_fen))
    journals: list[tuple[str, str, list[tuple[str, int]]]] = [(kind, reference, lines)]
    if family_account_fen:
        assert family_insured_id is not None, "family mutual aid names whose account paid"
        aid = [
            (receivable, sign * family_account_fen),
            (ledger.personal_account(family_insured_id), -sign * family_account_fen),
        ]
        journals.append((FAMILY_AID[kind], reference, aid))
    await ledger.post_together(journals)


# The journal kind of family mutual aid's part of each bill journal.
FAMILY_AID = {
    "bill.settled": "bill.family_aid",
    "bill.reversed": "bill.family_aid_reversed",
    "bill.refunded": "bill.family_aid_refunded",
}


async def notify_patients(
    bill: BillRecord,
    parties: Parties,
    template: str,
    milestone: str,
    at: datetime,
    payer_user_id: int | None = None,
    **params: Any,
) -> list[int]:
    """Tell every user bound to the bill's patient, and whoever paid it (a relative managing their
    bills), once per milestone; outbox ids to send."""
    institution = parties.institution
    messages = []
    users = await ecert.users_of_insured(bill.insured_id)
    payer = payer_user_id or bill.payer_user_id
    if payer is not None and payer not in users:
        users.append(payer)
    for user_id in users:
        message = await notify.notify(
            user_id,
            template,
            f"bill:{bill.id}",
            milestone,
            {
                "hospital": institution.name,
                "at": at.astimezone(CHINA).isoformat(),
                "bill_id": str(bill.id),
                **params,
            },
        )
        if message is not None:
            messages.append(message)
    return messages


async def locked_bill(bill_id: uuid.UUID) -> BillRecord:
    """The bill, locked until the caller's transaction ends: the first lock of every money move."""
    row = await Bill.select().where(Bill.id == bill_id).lock_rows().first()
    if row is None:
        raise AppError("no such bill", code="BILL_NOT_FOUND", status_code=404)
    return as_bill(row)


async def notify_paid(
    bill: BillRecord, parties: Parties, at: datetime, payer_user_id: int | None = None
) -> list[int]:
    return await notify_patients(
        bill,
        parties,
        "payment_succeeded",
        "paid",
        at,
        payer_user_id,
        amount_fen=bill.total_fen,
        bill_no=bill.bill_no,
    )
