"""What every partner client shares: one HTTP client, timeouts, and retries of transient failures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from backend.platform.errors import AppError, PartnerUnavailable
from backend.settings import PartnerHttpSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")
# The wait before each retry: 0.1, 0.3, 0.9 s, then the cap of 1 s, each plus up to 0.05 s of jitter
# (within the cap): every wait longer than the one before, whatever the jitter, until the cap.
WAIT = wait_exponential_jitter(multiplier=0.1, exp_base=3, max=1.0, jitter=0.05)


class TransientPartnerError(Exception):
    """A failure worth retrying: the partner was busy, timed out or answered 5xx."""

    def __init__(self, partner: str, reason: str) -> None:
        super().__init__(f"{partner}: {reason}")
        self.partner = partner
        self.reason = reason


def rejected(partner: str, message: str, **detail: Any) -> AppError:
    """The partner refused what we sent, or answered what we cannot use: our side to fix."""
    return AppError(message, code="PARTNER_REJECTED", status_code=502, detail={"partner": partner, **detail})


def unusable(partner: str, message: str) -> AppError:
    """An answer we cannot read: the partner may have acted on the request, so it is not a refusal."""
    return AppError(message, code="PARTNER_ANSWER_UNUSABLE", status_code=502, detail={"partner": partner})


def signature_invalid(partner: str, message: str) -> AppError:
    return AppError(message, code="PARTNER_SIGNATURE_INVALID", status_code=502, detail={"partner": partner})


def new_http_client(settings: PartnerHttpSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": "medpay/1"},
    )


async def with_retries(
    settings: PartnerHttpSettings,
    partner: str,
    call: Callable[[], Awaitable[T]],
    resend_after_timeout: bool = True,
) -> T:
    """Run `call`, retrying transient failures; when they persist, answer 503 PARTNER_UNAVAILABLE.

    A request that timed out may have been acted on: with `resend_after_timeout=False` only
    requests that never left (connection failures) are sent again.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.retries + 1),
        wait=WAIT,
        retry=retry_if_exception_type(TransientPartnerError),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                try:
                    return await call()
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    raise TransientPartnerError(partner, type(exc).__name__) from exc
                except httpx.TransportError as exc:
                    if not resend_after_timeout:
                        raise PartnerUnavailable(
                            f"{partner} did not answer in time; the request may have been seen",
                            detail={"partner": partner, "reason": type(exc).__name__},
                        ) from exc
                    raise TransientPartnerError(partner, type(exc).__name__) from exc
    except TransientPartnerError as exc:
        log.warning("partner unavailable", partner=partner, reason=exc.reason)
        raise PartnerUnavailable(
            f"{partner} is not answering; try again shortly",
            detail={"partner": partner, "reason": exc.reason},
            headers={"Retry-After": "5"},
        ) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")
