"""A self-service kiosk: the patient's unpaid bills, what paying one by face would take, and
paying it by face."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK

from backend.kiosk import face_pay
from backend.kiosk.schemas import FacePaymentRead, KioskBills, KioskPay, KioskPresettle, KioskPresettleRead
from backend.oauth.routes import PartnerDep, requires_scope
from backend.platform import idempotency
from backend.platform.deps import RuntimeDep
from backend.platform.headers import NO_STORE
from backend.platform.idempotency import IDEMPOTENT, KeyHeader
from backend.platform.openapi import errors, partner_token, returns
from backend.platform.schemas import IDENTIFIER

BillId = Annotated[uuid.UUID, PathParameter(description="the bill's id")]
NOT_A_KIOSK = (403, "`INSUFFICIENT_SCOPE`, or `NOT_A_KIOSK`: not an institution's kiosk.")
NOT_FOUND = (
    404,
    "`BILL_NOT_FOUND`: no such bill at this kiosk's institution; `ECERT_NOT_BOUND`: the patient has no "
    "account to pay from.",
)
WHO_PAYS = (422, "`FAMILY_KIOSK_NOT_GRANTED`: no relative allows their money at kiosks.")

VisitToken = Annotated[
    str,
    QueryParameter(
        description="the visit the patient's face check opened here",
        min_length=16,
        max_length=128,
        pattern=IDENTIFIER,
    ),
]


class KioskBillController(Controller):
    path = "/api/v1/partner/kiosk"
    tags = ["kiosk"]
    middleware = [requires_scope("kiosk:pay")]
    security = partner_token("kiosk:pay")
    cache_control = NO_STORE

    @get(
        "/bills",
        operation_id="kioskBills",
        responses=errors(
            NOT_A_KIOSK,
            (403, "`VISIT_WRONG_INSTITUTION`: the visit was opened at another institution."),
            (404, "`VISIT_NOT_FOUND`: no such visit, or it has ended."),
        ),
    )
    async def bills(self, partner: PartnerDep, visit_token: VisitToken) -> KioskBills:
        """The unpaid bills of the patient identified at this kiosk (the visit of their face check)."""
        return await face_pay.unpaid_bills(partner, visit_token)

    @post(
        "/bills/{bill_id:uuid}/presettle",
        status_code=HTTP_200_OK,
        operation_id="kioskPresettle",
        responses=errors(NOT_A_KIOSK, NOT_FOUND, (409, "`BILL_NOT_PAYABLE`, `POLICY_MISSING`."), WHO_PAYS),
    )
    async def presettle(
        self, bill_id: BillId, data: JSONBody[KioskPresettle], partner: PartnerDep
    ) -> KioskPresettleRead:
        """What paying by face would take, to show on the screen: the face is then taken for
        `amount_fen`, this bill and this kiosk."""
        return await face_pay.presettle(partner, bill_id, data)

    @post(
        "/bills/{bill_id:uuid}/pay",
        status_code=HTTP_200_OK,
        operation_id="kioskPay",
        responses={
            200: returns(
                FacePaymentRead, "Paid, or paying: the cash part drawn on a credit line or at the counter."
            ),
            **errors(
                NOT_A_KIOSK,
                NOT_FOUND,
                (
                    409,
                    "`ECERT_FACE_REPLAYED`, `KIOSK_AMOUNT_CHANGED`, `BILL_NOT_PAYABLE`, "
                    "`BILL_PAYMENT_IN_PROGRESS`, `CREDIT_LIMIT_EXCEEDED`, `FAMILY_CREDIT_CAP_EXCEEDED`, "
                    "`CREDIT_LINE_NOT_ACTIVE`.",
                ),
                (
                    422,
                    "`FACE_NOT_FROM_THIS_KIOSK`, `FACE_NOT_FOR_THIS_PAYMENT`, `FACE_SCORE_TOO_LOW`, "
                    "`FACE_NOT_THE_PATIENT`, `KIOSK_PAYMENT_CAP_EXCEEDED`, `KIOSK_DAILY_CAP_EXCEEDED`, "
                    "`FAMILY_KIOSK_NOT_GRANTED`, the platform's face refusals.",
                ),
                *IDEMPOTENT,
                502,
                503,
            ),
        },
    )
    async def pay(
        self,
        bill_id: BillId,
        data: JSONBody[KioskPay],
        partner: PartnerDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Pay by the patient's face, taken for this payment at this kiosk."""

        async def work(_: str) -> tuple[int, FacePaymentRead]:
            return 200, await face_pay.pay_by_face(runtime, partner, bill_id, data)

        return await idempotency.once(request, f"partner:{partner.client_id}", idempotency_key, data, work)
