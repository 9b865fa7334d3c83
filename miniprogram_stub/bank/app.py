"""The bank app: medpay's API under `/v1/credit`, the tester's `/_bank`, and `/health`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException

from miniprogram_stub.bank import api, config, control
from miniprogram_stub.bank.delivery import Courier
from miniprogram_stub.bank.records import BankError
from miniprogram_stub.bank.state import Bank


@get("/health", operation_id="health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _bank_error(request: Request[Any, Any, Any], exc: BankError) -> Response[Any]:
    return Response(exc.body, status_code=exc.status, media_type=MediaType.JSON)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (no such route, a bad path parameter) in the bank's shape."""
    if isinstance(exc, ValidationException):
        body: dict[str, Any] = {"code": "BAD_REQUEST", "message": str(exc.detail)}
    elif exc.status_code == 404:
        body = {"code": "NOT_FOUND"}
    else:
        try:
            code = HTTPStatus(exc.status_code).name
        except ValueError:
            code = "ERROR"
        body = {"code": code, "message": str(exc.detail)}
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers)


def create_app(callback_url: str | None = config.CALLBACK_URL) -> Litestar:
    # State lives in the app (not in modules) so each app starts clean.
    bank = Bank(Courier(callback_url))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with bank.courier.running():
            yield

    return Litestar(
        route_handlers=[health, api.router, control.router],
        state=State({"bank": bank}),
        lifespan=[lifespan],
        exception_handlers={BankError: _bank_error, HTTPException: _http_error},
        openapi_config=None,
        debug=False,
    )
