"""Credit over HTTP: patients apply, see their lines and repay; banks post signed callbacks."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from backend.auth.routes import PatientController, PatientDep
from backend.credit import applications, callbacks, repayments, views
from backend.credit.schemas import (
    ApplicationCreate,
    CreditRead,
    LineRead,
    ProductRead,
    RepaymentCreate,
    RepaymentRead,
)
from backend.platform import idempotency
from backend.platform.deps import RuntimeDep
from backend.platform.idempotency import IDEMPOTENT, KeyHeader
from backend.platform.openapi import BANK_SIGNATURE, errors, returns


class CreditController(PatientController):
    path = "/api/v1/credit"
    tags = ["credit"]

    @get("/", operation_id="creditGet")
    async def show(self, patient: PatientDep) -> CreditRead:
        """The patient's credit lines, each drawdown with its due date and what repays it today,
        and the products on offer with their terms."""
        return await views.credit_of(patient)

    @get("/products", operation_id="creditProducts")
    async def products(self) -> list[ProductRead]:
        """The credit products on offer, with the terms an application accepts."""
        return await views.products()

    @post(
        "/applications",
        status_code=HTTP_202_ACCEPTED,
        operation_id="creditApply",
        responses={
            202: returns(
                LineRead, "`APPLIED`: the bank decides, by callback (`line.approved` or `line.declined`)."
            ),
            **errors(
                (404, "`ECERT_NOT_BOUND`, or `CREDIT_PRODUCT_NOT_FOUND`."),
                (409, "`TERMS_OUTDATED` (accept the current terms), or `CREDIT_LINE_EXISTS`."),
                (422, "`CONSENT_REQUIRED`: the terms were not accepted."),
                *IDEMPOTENT,
            ),
        },
    )
    async def apply(
        self,
        data: JSONBody[ApplicationCreate],
        patient: PatientDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Apply for a line of a product, accepting its terms (`consent`); the consent is recorded
        with the version and text accepted."""

        async def work(request_key: str) -> tuple[int, LineRead]:
            return HTTP_202_ACCEPTED, await applications.apply(runtime, patient, data, request_key)

        return await idempotency.once(request, f"user:{patient.user_id}", idempotency_key, data, work)

    @post(
        "/repayments",
        status_code=HTTP_201_CREATED,
        operation_id="creditRepay",
        responses={
            201: returns(RepaymentRead, "`AWAITING_PAYMENT`: pay at the bank's `cashier_url`."),
            **errors(
                (404, "`DRAWDOWN_NOT_FOUND`: no such drawdown of yours (or nothing to repay)."),
                (409, "`DRAWDOWN_NOT_REPAYABLE`: not disbursed, or already repaid."),
                (422, "`REPAYMENT_EXCEEDS_OWED`: more than is owed today (`owed_fen`)."),
                *IDEMPOTENT,
                502,
                503,
            ),
        },
    )
    async def repay(
        self,
        data: JSONBody[RepaymentCreate],
        patient: PatientDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Repay a drawdown (the one due first when `drawdown_id` is left out), in part or in
        full: the bank's cashier takes the money; `repayment.posted` restores the line."""

        async def work(request_key: str) -> tuple[int, RepaymentRead]:
            return HTTP_201_CREATED, await repayments.start(runtime, patient, data, request_key)

        return await idempotency.once(request, f"user:{patient.user_id}", idempotency_key, data, work)


BankCode = Annotated[
    str, PathParameter(description="the bank's code", max_length=32, pattern=r"^[a-z0-9-]+$")
]


class BankCallbackController(Controller):
    """Banks' callbacks, signed by the Standard Webhooks scheme (see docs/credit.md)."""

    path = "/api/v1/callbacks/banks"
    tags = ["credit"]
    request_max_body_size = 64 * 1024
    security = [{BANK_SIGNATURE: []}]

    @post(
        "/{bank_code:str}",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="bankCallback",
        responses=errors(
            (400, "`CALLBACK_MALFORMED`: verified, but the body is not an event."),
            (401, "`CALLBACK_SIGNATURE_INVALID`: no valid signature by a live key, or a stale timestamp."),
            (404, "`BANK_NOT_FOUND`."),
        ),
    )
    async def receive(
        self, bank_code: BankCode, request: Request[Any, Any, Any], runtime: RuntimeDep
    ) -> None:
        """A bank's event (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1a,...`): stored
        once and acknowledged; a worker applies it."""
        await callbacks.receive(runtime, bank_code, request.headers, await request.body())
