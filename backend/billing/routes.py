"""Bills over HTTP: hospitals create and refund them, patients pre-settle and pay, channels notify."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from backend.auth.routes import PatientController, PatientDep
from backend.billing import bills, callbacks, counter, payment, refunds
from backend.billing.schemas import (
    BillCreate,
    BillPage,
    BillRead,
    CounterPaymentCreate,
    CounterPaymentRead,
    PaymentRead,
    PayRequest,
    PresettleRead,
    PresettleRequest,
    RefundCreate,
    RefundRead,
    WechatPayRefusal,
)
from backend.billing.tables import RefundState
from backend.ecert.qr import render
from backend.oauth.routes import PartnerDep, requires_scope
from backend.partners.channels import Answer
from backend.platform import idempotency
from backend.platform.deps import RuntimeDep
from backend.platform.errors import AppError
from backend.platform.headers import NO_STORE
from backend.platform.idempotency import IDEMPOTENT, KeyHeader
from backend.platform.openapi import errors, partner_token, pictures, returns
from backend.platform.runtime import Runtime

BillId = Annotated[uuid.UUID, PathParameter(description="the bill's id")]
# Read here rather than by Litestar, whose loose conversion of query parameters takes `0.5` for
# a Unix time: a time is RFC 3339, with its offset, as the document says.
Before = Annotated[
    str | None,
    QueryParameter(
        description="Bills created before this time (RFC 3339): the `next_before` of the last page.",
        schema_extra={"one_of": None, "type": "string", "format": "date-time"},
    ),
]
NOT_FOUND = (404, "`BILL_NOT_FOUND`: no such bill, or not yours.")


def _rfc3339(field: str, value: str | None) -> datetime | None:
    """An RFC 3339 time with its offset, in UTC (a time at the edge of the calendar whose UTC
    falls outside it is refused, not a 500)."""
    if value is None:
        return None
    try:
        moment: datetime = msgspec.convert(value, Annotated[datetime, msgspec.Meta(tz=True)])
        return moment.astimezone(UTC)
    except (msgspec.ValidationError, OverflowError) as exc:
        message = f"invalid value for '{field}': {exc}"
        raise AppError(message, code="VALIDATION_ERROR", detail={"field": field}) from None


class BillController(PatientController):
    path = "/api/v1/bills"
    tags = ["bills"]

    @get("/", operation_id="billList")
    async def list_bills(
        self,
        patient: PatientDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        before: Before = None,
    ) -> BillPage:
        """The patient's bills, newest first; `next_before` fetches the next page."""
        return await bills.list_for(patient, limit, _rfc3339("before", before))

    @get("/{bill_id:uuid}", operation_id="billGet", responses=errors(NOT_FOUND))
    async def show(self, bill_id: BillId, patient: PatientDep, runtime: RuntimeDep) -> BillRead:
        """One bill with its items, its split once payment started, and its refunds."""
        await bills.owned_bill(patient, bill_id)
        return await bills.read(runtime, bill_id)

    @post(
        "/{bill_id:uuid}/presettle",
        status_code=HTTP_200_OK,
        operation_id="billPresettle",
        responses=errors(
            NOT_FOUND,
            (409, "`BILL_NOT_PAYABLE`, or `POLICY_MISSING` for the patient."),
            (422, "`FAMILY_ACCOUNT_UNAVAILABLE`: no family mutual aid on this bill."),
        ),
    )
    async def presettle(
        self, bill_id: BillId, data: JSONBody[PresettleRequest], patient: PatientDep
    ) -> PresettleRead:
        """What the fund, the personal account, a relative's by family mutual aid (`family_account`)
        and cash would pay, item by item, with the rule."""
        return await payment.presettle_bill(patient, bill_id, data)

    @post(
        "/{bill_id:uuid}/pay",
        status_code=HTTP_200_OK,
        operation_id="billPay",
        responses={
            200: returns(
                PaymentRead,
                "Paid, or paying: `launch` opens the channel's payment (`counter`: where and what to pay).",
            ),
            **errors(
                NOT_FOUND,
                (
                    409,
                    "`BILL_NOT_PAYABLE`, `BILL_EXPIRED`, `BILL_PAYMENT_IN_PROGRESS`, `POLICY_MISSING`, "
                    "`FAMILY_CREDIT_CAP_EXCEEDED`.",
                ),
                (422, "`CASH_METHOD_REQUIRED`, `CASH_METHOD_UNAVAILABLE`, or `FAMILY_ACCOUNT_UNAVAILABLE`."),
                *IDEMPOTENT,
                502,
                503,
            ),
        },
    )
    async def pay(
        self,
        bill_id: BillId,
        data: JSONBody[PayRequest],
        patient: PatientDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Pay in one confirmation: the fund's and personal account's parts settle now; a cash part
        returns `launch`, what the mini-program opens the channel's payment with, or, by `counter`,
        what to pay at the hospital's counter."""

        async def work(_: str) -> tuple[int, PaymentRead]:
            return 200, await payment.pay(runtime, patient, bill_id, data)

        return await idempotency.once(request, f"user:{patient.user_id}", idempotency_key, data, work)


class PartnerBillController(Controller):
    path = "/api/v1/partner/bills"
    tags = ["bills"]
    middleware = [requires_scope("bills:write")]
    security = partner_token("bills:write")
    cache_control = NO_STORE

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        operation_id="partnerBillCreate",
        responses={
            201: returns(BillRead, "The bill, totalled, with its expiry."),
            **errors(
                (
                    403,
                    "`INSUFFICIENT_SCOPE`, `NO_INSTITUTION`, `VISIT_WRONG_INSTITUTION`, or `NO_RECENT_VISIT`"
                    " (billed by `cert_no` without a recent visit here).",
                ),
                (404, "`VISIT_NOT_FOUND` (or ended), `INSURED_NOT_FOUND` for the `cert_no`."),
                (
                    422,
                    "`VALIDATION_ERROR`: not exactly one of `visit_token` / `cert_no`, or too large a total.",
                ),
                *IDEMPOTENT,
            ),
        },
    )
    async def create(
        self,
        data: JSONBody[BillCreate],
        partner: PartnerDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """An itemized bill for the patient of a visit (or an e-certificate number); the server
        totals it. It expires unpaid after `MEDPAY_BILL_TTL_SECONDS`."""

        async def work(request_key: str) -> tuple[int, BillRead]:
            return 201, await bills.create(runtime, partner, data, request_key)

        return await idempotency.once(request, f"partner:{partner.client_id}", idempotency_key, data, work)

    @get("/{bill_id:uuid}", operation_id="partnerBillGet", responses=errors(NOT_FOUND))
    async def show(self, bill_id: BillId, partner: PartnerDep, runtime: RuntimeDep) -> BillRead:
        await bills.partner_bill(partner, bill_id)
        return await bills.read(runtime, bill_id)

    @get(
        "/{bill_id:uuid}/qrcode",
        operation_id="partnerBillQrCode",
        media_type="image/svg+xml",
        operation_class=pictures("image/png"),
        responses=errors(NOT_FOUND),
    )
    async def qrcode(
        self,
        bill_id: BillId,
        partner: PartnerDep,
        runtime: RuntimeDep,
        format: FromQuery[Literal["svg", "png"]] = "svg",
    ) -> Response[bytes]:
        """The bill's pay code for the counter's screen or the printed bill: scanning it opens the
        bill in the mini-program (`pay_url`)."""
        await bills.partner_bill(partner, bill_id)
        media = "image/svg+xml" if format == "svg" else "image/png"
        return Response(render(bills.pay_url(runtime, bill_id), format), media_type=media)

    @post(
        "/{bill_id:uuid}/refunds",
        status_code=HTTP_201_CREATED,
        operation_id="partnerBillRefund",
        responses={
            201: returns(RefundRead, "Accepted by the channel, or no cash to return."),
            202: returns(
                RefundRead, "`REQUESTED`: the channel has not answered yet; the sweeper asks again."
            ),
            **errors(
                NOT_FOUND,
                (409, "`BILL_NOT_REFUNDABLE`, or `REFUND_REJECTED` by the channel."),
                (422, "`REFUND_EXCEEDS_REMAINING`."),
                *IDEMPOTENT,
                503,
            ),
        },
    )
    async def refund(
        self,
        bill_id: BillId,
        data: JSONBody[RefundCreate],
        partner: PartnerDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Refund all that is left (no `amount_fen`) or part of it. Each part of the bill gives back
        its share; cash goes back through the channel (paid at the counter: the counter hands it
        back, and the refund succeeds at once). 202 while the channel has not answered."""

        async def work(request_key: str) -> tuple[int, RefundRead]:
            refund = await refunds.request_refund(runtime, partner, bill_id, data, request_key)
            return (HTTP_202_ACCEPTED if refund.state == RefundState.REQUESTED else HTTP_201_CREATED), refund

        return await idempotency.once(request, f"partner:{partner.client_id}", idempotency_key, data, work)

    @post(
        "/{bill_id:uuid}/counter-payment",
        status_code=HTTP_201_CREATED,
        operation_id="partnerBillCounterPayment",
        responses={
            201: returns(
                CounterPaymentRead, "Paid at the counter (the same receipt again: the same answer)."
            ),
            **errors(
                NOT_FOUND,
                (
                    409,
                    "`CASH_NOT_AT_COUNTER` (its cash part is by channel or credit, or none was chosen), "
                    "`BILL_NOT_PAYABLE`, `BILL_EXPIRED`, or `COUNTER_RECEIPT_USED` for another payment.",
                ),
                (422, "`COUNTER_AMOUNT_MISMATCH`: `amount_fen` is not the cash part left for the counter."),
                *IDEMPOTENT,
                503,
            ),
        },
    )
    async def counter_payment(
        self,
        bill_id: BillId,
        data: JSONBody[CounterPaymentCreate],
        partner: PartnerDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """The hospital's cashier took the cash part the patient chose to pay at the counter
        (`cash_method: counter`): the bill is paid. `receipt_no` is the hospital's own, once per
        institution."""

        async def work(_: str) -> tuple[int, CounterPaymentRead]:
            return HTTP_201_CREATED, await counter.record(runtime, partner, bill_id, data)

        return await idempotency.once(request, f"partner:{partner.client_id}", idempotency_key, data, work)


class ChannelRefused(Exception):
    """A notification we did not verify: the channel gets its own refusal, and sends it again."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer


def _refusal(_: Request[Any, Any, Any], exc: ChannelRefused) -> Response[bytes]:
    answer = exc.answer
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


async def _acknowledged(runtime: Runtime, channel: str, request: Request[Any, Any, Any]) -> bytes:
    answer = await callbacks.receive(runtime, channel, request.headers, await request.body())
    if answer.status_code >= 400:
        raise ChannelRefused(answer)
    return answer.body


class PaymentNotifyController(Controller):
    """Each channel's notifications, answered in the channel's own terms (not our error envelope)."""

    path = "/api/v1/payments/notify"
    tags = ["payments"]
    request_max_body_size = 64 * 1024
    exception_handlers = {ChannelRefused: _refusal}

    @post(
        "/wechat",
        status_code=HTTP_204_NO_CONTENT,
        operation_id="paymentNotifyWechat",
        responses={400: returns(WechatPayRefusal, "Not verified: WeChat Pay sends it again.")},
    )
    async def wechat(self, request: Request[Any, Any, Any], runtime: RuntimeDep) -> None:
        """A WeChat Pay v3 notification: `Wechatpay-Signature` verified, the resource decrypted."""
        await _acknowledged(runtime, "wechat", request)

    @post(
        "/alipay",
        status_code=HTTP_200_OK,
        operation_id="paymentNotifyAlipay",
        media_type=MediaType.TEXT,
        responses={
            400: ResponseSpec(str, description="`fail`: Alipay sends it again.", media_type=MediaType.TEXT)
        },
    )
    async def alipay(self, request: Request[Any, Any, Any], runtime: RuntimeDep) -> bytes:
        """An Alipay notification (form-encoded, RSA2-signed); `success` acknowledges it."""
        return await _acknowledged(runtime, "alipay", request)


# No lookup, so the page says nothing about whether the bill exists, and nothing personal.
PAY_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>medpay 账单 / bill</title>
</head>
<body>
<h1>medpay</h1>
<p>此链接在 medpay 小程序中打开账单 <code>{bill_id}</code>：
请用微信或支付宝扫描账单上的二维码，在小程序中查看并支付。</p>
<p lang="en">This link opens bill <code>{bill_id}</code> in the medpay mini-program:
scan the bill's QR code with WeChat or Alipay to see and pay it there.</p>
</body>
</html>
"""


class PayLinkController(Controller):
    """What a bill's `pay_url` opens in a plain browser, until the mini-program's H5 pages exist."""

    path = "/mp/bill"
    include_in_schema = False  # a page for people, not part of the API

    @get(
        "/{bill_id:uuid}",
        media_type=MediaType.HTML,
        cache_control=CacheControlHeader(no_store=True),
        # Nothing to load or run: the page is its own text.
        response_headers={"Content-Security-Policy": "default-src 'none'"},
    )
    async def page(self, bill_id: BillId) -> str:
        """Says what the link is; unauthenticated, so it shows only the id the link carries."""
        return PAY_PAGE.format(bill_id=bill_id)
