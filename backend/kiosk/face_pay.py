"""Paying a bill by the patient's face at a self-service kiosk, for elders without a phone.

The face is taken for this payment: its assertion names the kiosk, the bill and the amount the
screen showed. The e-certificate platform checks the signature, freshness, its own score floor,
liveness and first use; here it is held to this kiosk, this bill, this amount and this patient,
above our own score threshold (`MEDPAY_KIOSK_MIN_FACE_SCORE`), within the per-payment and daily
caps, and spent once. Then the bill is paid as on the phone (`billing.payment.pay`, in person):
the fund and the personal account settle, the cash part is drawn on a credit line or left for the
hospital's counter, and the face payment is recorded for fund supervision in the same
transaction. A relative's money pays only under a link whose holder allowed it at kiosks.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

import structlog

from backend.auth import service as auth
from backend.auth.service import Patient
from backend.billing import payment, records
from backend.billing.parties import CHINA, notify_patients, parties_of
from backend.billing.records import BillRecord
from backend.billing.schemas import PaymentRead, PayRequest, PresettleRequest
from backend.billing.settlement import Split
from backend.billing.tables import Bill, BillState
from backend.ecert import service as ecert
from backend.family import service as family
from backend.hospitals import service as hospitals
from backend.kiosk.schemas import (
    Consent,
    FacePaymentRead,
    KioskBill,
    KioskBills,
    KioskPay,
    KioskPresettle,
    KioskPresettleRead,
)
from backend.kiosk.tables import FacePayment
from backend.oauth import service as oauth
from backend.oauth.service import Partner
from backend.partners.ecert import FaceCheck
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


FACE = {"field": "face_assertion"}


def consent_for(bill_id: uuid.UUID, amount_fen: int, payer: str, link_id: int | None, cash: str) -> Consent:
    """What a face taken to pay consents to: the bill, the amount, and who pays it how
    (`patient/counter`, `relative:12/credit`, ...). The kiosk has the face taken for exactly this."""
    who = payer if link_id is None else f"{payer}:{link_id}"
    return Consent(bill=str(bill_id), amount_fen=amount_fen, by=f"{who}/{cash}")


async def pay_by_face(
    rt: Runtime, partner: Partner, bill_id: uuid.UUID, request: KioskPay
) -> FacePaymentRead:
    settings = rt.settings.kiosk
    bill = await _bill_at(partner, bill_id)
    if (done := await _paid_before(partner, bill, request)) is not None:
        return done  # a repeat of a payment made with this very face (its answer was lost)
    payer, link_id = await _payer(bill, request)
    expected = consent_for(bill.id, request.amount_fen, request.payer, link_id, request.cash)
    identity = await rt.partners.ecert.verify_face(request.face_assertion)
    face = _held_to(identity.face, partner, expected, settings.min_face_score)
    if await ecert.insured_by_identity(rt.vault, identity) != bill.insured_id:
        raise AppError(
            "the face is not the patient's whose bill this is",
            code="FACE_NOT_THE_PATIENT",
            status_code=422,
            detail=FACE,
        )
    recorded: list[datetime] = []

    async def consent(locked: BillRecord, split: Split) -> list[int]:
        """Inside the paying transaction: the amount still the one shown, the caps (the person's
        face payments counted one at a time), the assertion spent, the payment recorded."""
        if link_id is not None:  # the relative's grant, again under the link's lock
            acting = await family.acting_for(payer.user_id, locked.insured_id)
            if acting is None or acting.link_id != link_id or not acting.kiosk:
                raise AppError(
                    "the relative no longer allows their money to pay at kiosks",
                    code="FAMILY_KIOSK_NOT_GRANTED",
                    status_code=422,
                    detail={"field": "payer"},
                )
        amount = split.total_fen - split.fund_fen
        if amount != request.amount_fen:
            raise Conflict(
                f"the amount to pay is now {amount} fen: show it and take the face again",
                code="KIOSK_AMOUNT_CHANGED",
                detail={"field": "amount_fen", "amount_fen": amount},
            )
        # What the face itself takes: the counter's cash is paid in person at the counter.
        charged = amount - (split.cash_fen if request.cash == "counter" else 0)
        await _within_caps(locked.insured_id, charged, settings.max_payment_fen, settings.max_daily_fen)
        await ecert.spend_face_assertion(face.jti)
        now = datetime.now(UTC)
        await FacePayment.insert(
            FacePayment(
                bill_id=locked.id,
                insured_id=locked.insured_id,
                institution_id=locked.institution_id,
                kiosk_client_id=partner.client_id,
                assertion_id=face.jti,
                score=face.score,
                liveness=face.liveness,
                taken_at=datetime.fromtimestamp(face.iat, UTC),
                amount_fen=amount,
                charged_fen=charged,
                consent=expected.by,
                cash_source=request.cash if split.cash_fen else "none",
                payer_user_id=payer.user_id,
                family_link_id=link_id,
                created_at=now,
            )
        )
        recorded.append(now)
        # The patient (if they have the app) and the relative who paid hear of each face payment.
        return await notify_patients(
            locked,
            await parties_of(locked),
            "face_payment",
            "face",
            now,
            payer.user_id,
            kiosk=await oauth.client_name(partner.client_id),
            amount_fen=amount,
        )

    paid = await payment.pay(
        rt,
        payer,
        bill_id,
        PayRequest(
            use_personal_account=request.use_personal_account,
            family_account=link_id is not None and await _aid_granted(payer, bill),
            cash_method=request.cash,
        ),
        payment.InPerson(via=partner.client_id, check=consent),
    )
    log.info("bill paid by face", bill_id=str(bill_id), kiosk=partner.client_id, paid_by=request.payer)
    return _read(paid, request.amount_fen, request.payer, partner.client_id, face.score, recorded[0])


def _read(
    paid: PaymentRead, amount_fen: int, paid_by: str, kiosk: str, score: float, at: datetime
) -> FacePaymentRead:
    return FacePaymentRead(
        bill_id=paid.bill_id,
        state=paid.state,
        amount_fen=amount_fen,
        fund_fen=paid.fund_fen,
        personal_account_fen=paid.personal_account_fen,
        family_account_fen=paid.family_account_fen,
        cash_fen=paid.cash_fen,
        cash_method=paid.cash_method,
        launch=paid.launch,
        paid_by=paid_by,  # type: ignore[arg-type]
        kiosk=kiosk,
        face_score=score,
        created_at=at,
    )


async def _paid_before(partner: Partner, bill: BillRecord, request: KioskPay) -> FacePaymentRead | None:
    """The face payment this request already made (the same assertion at the same kiosk), if any:
    a retry after an answer that never arrived gets the payment's answer, not a replay refusal."""
    row = (
        await FacePayment.select()
        .where(
            (FacePayment.bill_id == bill.id)
            & (FacePayment.kiosk_client_id == partner.client_id)
            & (FacePayment.assertion_id == ecert.assertion_id(request.face_assertion))
        )
        .first()
    )
    if row is None:
        return None
    now = await records.bill(bill.id)
    assert now is not None
    paid = await payment.payment_of(now)
    paid_by = "patient" if row["family_link_id"] is None else "relative"
    return _read(paid, row["amount_fen"], paid_by, partner.client_id, row["score"], row["created_at"])


async def _within_caps(insured_id: int, charged_fen: int, max_payment_fen: int, max_daily_fen: int) -> None:
    """One face payment, and a person's face payments today (Beijing time), within the caps. A
    lock per person, taken last, counts their face payments one at a time (their year's usage row
    is locked too, but two payments around New Year's midnight lock different years')."""
    if charged_fen > max_payment_fen:
        raise AppError(
            f"a face payment takes at most {max_payment_fen} fen: pay at the counter or on a phone",
            code="KIOSK_PAYMENT_CAP_EXCEEDED",
            status_code=422,
            detail={"field": "amount_fen", "max_fen": max_payment_fen},
        )
    await FacePayment.raw("SELECT pg_advisory_xact_lock(hashtext('kiosk-face-daily'), {})", insured_id)
    midnight = datetime.combine(datetime.now(CHINA).date(), time(), CHINA)
    rows = await FacePayment.raw(
        """
        SELECT coalesce(sum(f.charged_fen), 0) AS taken FROM face_payment f JOIN bill b ON b.id = f.bill_id
        WHERE f.insured_id = {} AND f.created_at >= {} AND b.state NOT IN ('CLOSED', 'FAILED')
        """,
        insured_id,
        midnight,
    )
    today = int(rows[0]["taken"])
    if today + charged_fen > max_daily_fen:
        raise AppError(
            f"face payments may take {max_daily_fen} fen a day; {max(0, max_daily_fen - today)} are left "
            "today: pay at the counter or on a phone",
            code="KIOSK_DAILY_CAP_EXCEEDED",
            status_code=422,
            detail={"field": "amount_fen", "left_fen": max(0, max_daily_fen - today)},
        )


async def unpaid_bills(partner: Partner, visit_token: str) -> KioskBills:
    """The unpaid bills of the patient of a visit at this kiosk's institution, oldest first."""
    await _kiosk(partner)
    _, insured_id = await ecert.visit_for_bill(visit_token, partner)
    institution = await hospitals.of_partner(partner.institution_code)
    rows = (
        await Bill.select(
            Bill.id, Bill.bill_no, Bill.order_type, Bill.total_fen, Bill.created_at, Bill.expires_at
        )
        .where(
            (Bill.insured_id == insured_id)
            & (Bill.institution_id == institution.id)
            & (Bill.state == BillState.CREATED)
            & (Bill.expires_at > datetime.now(UTC))
        )
        .order_by(Bill.created_at)
        .limit(50)
    )
    return KioskBills(items=[KioskBill(**row) for row in rows])


async def presettle(partner: Partner, bill_id: uuid.UUID, request: KioskPresettle) -> KioskPresettleRead:
    """What paying by face would take, as `pay_by_face` will settle it: `amount_fen` is what the
    face is taken for."""
    bill = await _bill_at(partner, bill_id)
    _, insured_id = await ecert.visit_for_bill(request.visit_token, partner)
    if insured_id != bill.insured_id:  # only the patient standing at the kiosk sees their bill's split
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    payer, link_id = await _payer(bill, request)
    split = await payment.presettle_bill(
        payer,
        bill_id,
        PresettleRequest(
            use_personal_account=request.use_personal_account,
            family_account=link_id is not None and await _aid_granted(payer, bill),
        ),
    )
    amount = split.total_fen - split.fund_fen
    return KioskPresettleRead(
        amount_fen=amount,
        consent=consent_for(bill.id, amount, request.payer, link_id, request.cash),
        split=split,
    )


async def _kiosk(partner: Partner) -> None:
    if partner.kind != "kiosk" or partner.institution_code is None:
        raise Forbidden("only an institution's kiosks take payments by face", code="NOT_A_KIOSK")


async def _bill_at(partner: Partner, bill_id: uuid.UUID) -> BillRecord:
    """The bill, if it is one of this kiosk's institution's; 404 otherwise."""
    await _kiosk(partner)
    institution = await hospitals.of_partner(partner.institution_code)
    bill = await records.bill(bill_id)
    if bill is None or bill.institution_id != institution.id:
        raise NotFound("no such bill", code="BILL_NOT_FOUND")
    return bill


def _held_to(face: FaceCheck | None, partner: Partner, expected: Consent, min_score: float) -> FaceCheck:
    """The platform's reading of the assertion, held to this kiosk and this payment: the bill, the
    amount, who pays it how."""
    if face is None or face.aud != partner.client_id:
        raise AppError(
            "this face was not taken by this kiosk",
            code="FACE_NOT_FROM_THIS_KIOSK",
            status_code=422,
            detail=FACE,
        )
    taken_for = face.pay
    if taken_for is None or (taken_for.bill, taken_for.amount_fen, taken_for.by) != (
        expected.bill,
        expected.amount_fen,
        expected.by,
    ):
        raise AppError(
            "this face was not taken for this payment (bill, amount, who pays how): take it again for it",
            code="FACE_NOT_FOR_THIS_PAYMENT",
            status_code=422,
            detail=FACE,
        )
    if not face.liveness or face.score < min_score:
        raise AppError(
            f"the face check is not sure enough to pay (score {face.score}, at least {min_score}, live)",
            code="FACE_SCORE_TOO_LOW",
            status_code=422,
            detail={**FACE, "score": face.score, "min_score": min_score},
        )
    return face


async def _payer(bill: BillRecord, request: KioskPay | KioskPresettle) -> tuple[Patient, int | None]:
    """Whose money pays beyond the fund: the patient's (their own account, their credit line), or
    a relative's under a live link that grants them `kiosk` besides `pay` or `credit`."""
    if request.payer == "patient":
        user = await ecert.bound_user(bill.insured_id)
        if user is None:
            raise AppError(
                "the patient has no account to pay from", code="ECERT_NOT_BOUND", status_code=404, detail=FACE
            )
        return await _patient(user), None
    for holder_user, link in await family.holders_of(bill.insured_id):
        if request.relative_link_id not in (None, link.link_id):
            continue
        if link.kiosk and (link.pay or link.credit_cap_fen is not None):
            return await _patient(holder_user), link.link_id
    raise AppError(
        "no relative of this patient allows their money to pay at kiosks",
        code="FAMILY_KIOSK_NOT_GRANTED",
        status_code=422,
        detail={"field": "relative_link_id" if request.relative_link_id else "payer"},
    )


async def _patient(user_id: int) -> Patient:
    return Patient(user_id=user_id, channel=(await auth.channel_account(user_id)).channel)


async def _aid_granted(payer: Patient, bill: BillRecord) -> bool:
    acting = await family.acting_for(payer.user_id, bill.insured_id, lock=False)
    return acting is not None and acting.pay
