"""The bank's API for medpay, under `/v1/credit`; every request is signed by medpay.

Each POST is idempotent on its id: the same body answers the same again, another body 409
`ID_REUSED`. Decisions are made at once; their outcome comes later as a signed callback. A fault
armed by `POST /_bank/api-faults` shapes the answer (`faults.ApiFault`).
"""

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import Provide

from miniprogram_stub.bank import signing
from miniprogram_stub.bank.faults import garbage
from miniprogram_stub.bank.records import BankError
from miniprogram_stub.bank.schemas import (
    Application,
    ApplicationAccepted,
    Disbursement,
    DisbursementAccepted,
    RefundAccepted,
    RefundRequest,
    RepaymentAccepted,
    RepaymentRequest,
)
from miniprogram_stub.bank.state import Bank, decode, provide_bank

T = TypeVar("T", bound=msgspec.Struct)
Run = Callable[[bytes], tuple[int, msgspec.Struct]]


async def _answer(request: Request[Any, Any, Any], bank: Bank, api: str, run: Run) -> Response[Any]:
    """Verify medpay's signature over the raw body, run, answer, and record the call. An armed
    fault refuses the request before the bank looks at it, or shapes the answer once it has acted."""
    raw = await request.body()
    fault = bank.api_faults.take(api)
    answer: Any
    if fault is not None and not fault.acts:
        assert fault.http_status is not None  # an ApiFault that does not act has one
        await asyncio.sleep((fault.delay_ms or 0) / 1000)
        status, answer = fault.http_status, {"code": _status_name(fault.http_status)}
    else:
        try:
            signing.verify_medpay(request.headers, raw)
            status, answer = run(raw)
        except signing.SignatureInvalid as exc:
            status, answer = 401, {"code": "SIGNATURE_INVALID", "message": str(exc)}
        except BankError as exc:
            status, answer = exc.status, exc.body
        if fault is not None:  # done as asked; only the answer is late, of another status, or garbled
            await asyncio.sleep((fault.delay_ms or 0) / 1000)
            status = fault.http_status or status
    content, media_type = msgspec.json.encode(answer), "application/json"
    if fault is not None and fault.body is not None:
        content, media_type = garbage(fault.body, content)
    bank.record(f"{request.method} {request.url.path}", raw, status)
    return Response(content, status_code=status, media_type=media_type)


def _status_name(status: int) -> str:
    try:
        return HTTPStatus(status).name
    except ValueError:
        return "ERROR"


def _accept(bank: Bank, api: str, schema: type[T], key: Callable[[T], str], act: Callable[[T], Any]) -> Run:
    def run(raw: bytes) -> tuple[int, msgspec.Struct]:
        ask = decode(raw, schema)
        return 202, bank.once(api, key(ask), ask, lambda: act(ask))

    return run


def _view(view: Callable[[], msgspec.Struct]) -> Run:
    return lambda raw: (200, view())


@post("/applications", operation_id="bankApply")
async def apply(request: Request[Any, Any, Any], bank: Bank) -> Response[Any]:
    def act(ask: Application) -> ApplicationAccepted:
        bank.emit(bank.books.decide(ask))
        return ApplicationAccepted(ask.application_id)

    run = _accept(bank, "applications", Application, lambda a: a.application_id, act)
    return await _answer(request, bank, "applications", run)


@post("/disbursements", operation_id="bankDisburse")
async def disburse(request: Request[Any, Any, Any], bank: Bank) -> Response[Any]:
    def act(ask: Disbursement) -> DisbursementAccepted:
        bank.emit(bank.books.disburse(ask))
        return DisbursementAccepted(ask.drawdown_id)

    run = _accept(bank, "disbursements", Disbursement, lambda a: a.drawdown_id, act)
    return await _answer(request, bank, "disbursements", run)


@get("/disbursements/{drawdown_id:str}", operation_id="bankGetDisbursement")
async def get_disbursement(request: Request[Any, Any, Any], bank: Bank, drawdown_id: str) -> Response[Any]:
    run = _view(lambda: bank.books.disbursement(drawdown_id))
    return await _answer(request, bank, "disbursement-query", run)


@post("/repayments", operation_id="bankRepay")
async def repay(request: Request[Any, Any, Any], bank: Bank) -> Response[Any]:
    base = str(request.base_url).rstrip("/")

    def act(ask: RepaymentRequest) -> RepaymentAccepted:
        repayment = bank.books.open_repayment(ask.repayment_id, ask.drawdown_id, ask.amount_fen, "patient")
        cashier = f"{base}/_bank/cashier/{quote(repayment.repayment_id, safe='')}"
        return RepaymentAccepted(repayment.repayment_id, "AWAITING_PAYMENT", cashier)

    run = _accept(bank, "repayments", RepaymentRequest, lambda a: a.repayment_id, act)
    return await _answer(request, bank, "repayments", run)


@get("/repayments/{repayment_id:str}", operation_id="bankGetRepayment")
async def get_repayment(request: Request[Any, Any, Any], bank: Bank, repayment_id: str) -> Response[Any]:
    run = _view(lambda: bank.books.repayment(repayment_id).view())
    return await _answer(request, bank, "repayment-query", run)


@post("/refunds", operation_id="bankRefund")
async def refund(request: Request[Any, Any, Any], bank: Bank) -> Response[Any]:
    def act(ask: RefundRequest) -> RefundAccepted:
        bank.emit(bank.books.refund(ask.refund_id, ask.drawdown_id, ask.amount_fen))
        return RefundAccepted(ask.refund_id)

    run = _accept(bank, "refunds", RefundRequest, lambda a: a.refund_id, act)
    return await _answer(request, bank, "refunds", run)


@get("/refunds/{refund_id:str}", operation_id="bankGetRefund")
async def get_refund(request: Request[Any, Any, Any], bank: Bank, refund_id: str) -> Response[Any]:
    run = _view(lambda: bank.books.get_refund(refund_id).view())
    return await _answer(request, bank, "refund-query", run)


router = Router(
    "/v1/credit",
    route_handlers=[apply, disburse, get_disbursement, repay, get_repayment, refund, get_refund],
    dependencies={"bank": Provide(provide_bank, sync_to_thread=False)},
)
