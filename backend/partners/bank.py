"""Banks' credit APIs: line applications, disbursements to hospitals, repayments, refunds.

Every request is JSON, signed by our key the Standard Webhooks way (`webhooks.sign_headers`), and
idempotent on the id it carries (our application, drawdown, repayment or refund id), so a request
that timed out is sent again safely. A bank answers 202 and decides later, by callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import httpx
import msgspec

from backend.partners import webhooks
from backend.partners.http import TransientPartnerError, rejected, unusable, with_retries
from backend.settings import PartnerHttpSettings

PARTNER = "bank"


class Disbursement(msgspec.Struct, frozen=True):
    """A bank's word on a disbursement it was asked for."""

    drawdown_id: str
    status: Literal["DISBURSED", "FAILED"]
    amount_fen: int
    disbursement_ref: str | None = None
    disbursed_at: datetime | None = None
    due_date: date | None = None
    reason: str | None = None


class RefundPosted(msgspec.Struct, frozen=True):
    refund_id: str
    drawdown_id: str
    status: Literal["POSTED"]
    amount_fen: int
    reduced_owed_fen: int
    returned_fen: int


class RepaymentStarted(msgspec.Struct, frozen=True):
    repayment_id: str
    status: str
    cashier_url: str


@dataclass(frozen=True)
class BankRefusal(Exception):
    """The bank refused the request: its code (e.g. AMOUNT_EXCEEDS_OWED) and what it said."""

    code: str
    body: dict[str, Any]


class BankClient:
    def __init__(self, signing_key: str, http_settings: PartnerHttpSettings, http: httpx.AsyncClient) -> None:
        self._key = webhooks.secret_key(signing_key)
        self._settings = http_settings
        self._http = http

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        content = msgspec.json.encode(body) if body is not None else b""

        async def send() -> httpx.Response:
            headers = {**webhooks.sign_headers([self._key], content), "Content-Type": "application/json"}
            answer = await self._http.request(method, url, content=content, headers=headers)
            if answer.status_code >= 500 or answer.status_code == 429:
                raise TransientPartnerError(PARTNER, f"HTTP {answer.status_code}")
            return answer

        return await with_retries(self._settings, PARTNER, send)

    async def _accepted(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._call("POST", url, body)
        reply = self._json(answer)
        if answer.status_code not in (200, 201, 202):
            code = str(reply.get("code", f"HTTP_{answer.status_code}"))
            raise BankRefusal(code, reply)
        return reply

    @staticmethod
    def _json(answer: httpx.Response) -> dict[str, Any]:
        try:
            reply = msgspec.json.decode(answer.content)
        except msgspec.DecodeError:
            raise unusable(PARTNER, f"the bank answered HTTP {answer.status_code} with no JSON") from None
        if not isinstance(reply, dict):
            raise unusable(PARTNER, "the bank's answer is not a JSON object")
        return reply

    async def apply(self, api_base: str, body: dict[str, Any]) -> None:
        await self._accepted(f"{api_base}/v1/credit/applications", body)

    async def disburse(self, api_base: str, body: dict[str, Any]) -> None:
        await self._accepted(f"{api_base}/v1/credit/disbursements", body)

    async def disbursement(self, api_base: str, drawdown_id: str) -> Disbursement | None:
        """The disbursement as the bank has it; None when it never received the request."""
        answer = await self._call("GET", f"{api_base}/v1/credit/disbursements/{drawdown_id}")
        if answer.status_code == 404:
            return None
        found: Disbursement = self._converted(answer, Disbursement)
        return found

    async def repay(self, api_base: str, body: dict[str, Any]) -> RepaymentStarted:
        return msgspec.convert(
            await self._accepted(f"{api_base}/v1/credit/repayments", body), RepaymentStarted
        )

    async def refund(self, api_base: str, body: dict[str, Any]) -> None:
        await self._accepted(f"{api_base}/v1/credit/refunds", body)

    async def refund_status(self, api_base: str, refund_id: str) -> RefundPosted | None:
        answer = await self._call("GET", f"{api_base}/v1/credit/refunds/{refund_id}")
        if answer.status_code == 404:
            return None
        posted: RefundPosted = self._converted(answer, RefundPosted)
        return posted

    def _converted(self, answer: httpx.Response, kind: type[Any]) -> Any:
        reply = self._json(answer)
        if answer.status_code != 200:
            raise rejected(
                PARTNER, f"the bank answered HTTP {answer.status_code}", platform_code=reply.get("code")
            )
        try:
            return msgspec.convert(reply, kind)
        except msgspec.ValidationError as exc:
            raise unusable(PARTNER, f"the bank's answer does not read: {exc}") from None
