"""What goes over the wire at a kiosk. Amounts in fen."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.billing.schemas import PresettleRead
from backend.ecert.schemas import VisitToken
from backend.platform.schemas import IDENTIFIER, FenOrZero, RowId, Wire

Assertion = Annotated[str, msgspec.Meta(min_length=16, max_length=4096, pattern=IDENTIFIER)]


class KioskPay(Wire):
    """Pay a bill by the patient's face, taken for this payment: the face assertion names this
    kiosk, the bill and `amount_fen`, the amount the screen showed (the bill less the fund's part:
    what the patient's own money, or a relative's, pays)."""

    face_assertion: Assertion
    amount_fen: FenOrZero
    use_personal_account: bool = True
    # Who pays beyond the fund and the patient's own personal account: the patient (their credit
    # line, or the counter), or a relative whose link grants `kiosk` (their personal account by
    # `pay`, their credit line by `credit`, else the counter).
    payer: Literal["patient", "relative"] = "patient"
    relative_link_id: RowId | None = None  # which relative; default: the first
    cash: Literal["credit", "counter"] = "counter"  # how the cash part is paid


class FacePaymentRead(Wire, omit_defaults=False):
    bill_id: uuid.UUID
    state: str
    amount_fen: int  # what the face consented to
    fund_fen: int
    personal_account_fen: int
    family_account_fen: int
    cash_fen: int
    cash_method: str | None
    # What the kiosk shows to finish: by the counter, where and what to pay (null when nothing is left).
    launch: dict[str, str] | None
    paid_by: Literal["patient", "relative"]
    kiosk: str
    face_score: float
    created_at: datetime


class KioskPresettle(Wire):
    """What a face payment would pay, to show before the face is taken, to the patient standing at
    the kiosk (`visit_token`, from their face check): as `KioskPay` says who pays and how."""

    visit_token: VisitToken
    use_personal_account: bool = True
    payer: Literal["patient", "relative"] = "patient"
    relative_link_id: RowId | None = None
    cash: Literal["credit", "counter"] = "counter"


class Consent(Wire, omit_defaults=False):
    """What the face is to be taken for: the face provider's scan names these (`pay`), and only a
    face taken for exactly this payment pays it."""

    bill: str
    amount_fen: int
    by: str  # who pays how: `patient/counter`, `relative:12/credit`, ...


class KioskBill(Wire, omit_defaults=False):
    id: uuid.UUID
    bill_no: str
    order_type: str
    total_fen: int
    created_at: datetime
    expires_at: datetime


class KioskBills(Wire, omit_defaults=False):
    items: list[KioskBill]  # the patient's unpaid bills at this institution, oldest first


class KioskPresettleRead(Wire, omit_defaults=False):
    amount_fen: int  # the bill less the fund's part: what the patient's (or a relative's) money pays
    consent: Consent  # what the face is taken for
    split: PresettleRead
