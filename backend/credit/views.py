"""What a patient sees of credit: the products on offer, their lines, every drawdown and what
it takes to repay it today."""

from __future__ import annotations

import uuid

from backend.auth.service import Patient
from backend.credit import banks, lines
from backend.credit.schemas import CreditRead, DrawdownRead, LineRead, ProductRead
from backend.credit.tables import CreditLine, CreditProduct, Drawdown, DrawdownStatus
from backend.ecert import service as ecert


async def products() -> list[ProductRead]:
    return [
        ProductRead(
            id=product.id,
            bank=lender.name,
            name=product.name,
            limit_fen=product.limit_fen,
            interest_free_days=product.interest_free_days,
            daily_interest_bp=product.daily_interest_bp,
            terms_version=product.terms_version,
            terms_text=product.terms_text,
        )
        for product, lender in await banks.products()
    ]


async def credit_of(patient: Patient) -> CreditRead:
    insured = await ecert.insured_of_user(patient.user_id)
    rows = (
        await CreditLine.select(CreditLine.id)
        .where(CreditLine.insured_id.is_in(insured))
        .order_by(CreditLine.applied_at, ascending=False)
        if insured
        else []
    )
    return CreditRead(lines=[await line(row["id"]) for row in rows], products=await products())


async def line(line_id: uuid.UUID) -> LineRead:
    row = await CreditLine.select().where(CreditLine.id == line_id).first()
    assert row is not None
    lender = await banks.bank_by_id(row["bank_id"])
    product = await CreditProduct.select(CreditProduct.daily_interest_bp).where(
        CreditProduct.id == row["product_id"]
    )
    daily_bp = product[0]["daily_interest_bp"]
    today = lines.china_today()
    drawdowns = []
    for d in await Drawdown.select().where(Drawdown.line_id == line_id).order_by(Drawdown.created_at):
        accrued = (
            lines.accrued_interest(d["principal_fen"], d["due_date"], daily_bp, today)
            if d["status"] == DrawdownStatus.DISBURSED
            else 0
        )
        drawdowns.append(
            DrawdownRead(
                id=d["id"],
                bill_id=d["bill_id"],
                amount_fen=d["amount_fen"],
                status=d["status"],
                disbursed_at=d["disbursed_at"],
                due_date=d["due_date"],
                principal_fen=d["principal_fen"] if d["status"] != DrawdownStatus.FAILED else 0,
                interest_accrued_fen=accrued,
                owed_fen=(d["principal_fen"] + accrued) if d["status"] == DrawdownStatus.DISBURSED else 0,
                repaid_fen=d["repaid_fen"],
                refunded_fen=d["refunded_fen"],
            )
        )
    return LineRead(
        id=row["id"],
        bank=lender.name,
        product_id=row["product_id"],
        status=row["status"],
        limit_fen=row["limit_fen"],
        used_fen=row["used_fen"],
        available_fen=row["limit_fen"] - row["used_fen"] if row["status"] == "ACTIVE" else 0,
        expires_on=row["expires_on"],
        decline_reason=row["decline_reason"],
        applied_at=row["applied_at"],
        terms_version=row["terms_version"],
        drawdowns=drawdowns,
    )
