"""Idempotency keys for money-moving POSTs.

The first request with a key claims it and runs; its response (2xx or 4xx) is stored and
replayed to every repeat with the same body. A repeat with another body is refused with 422
`IDEMPOTENCY_KEY_REUSED`. A repeat that arrives while the first still runs waits for it and
replays its answer. A 5xx releases the key, so a retry runs again: the work must find what a first
run committed (bills and refunds are recorded under their key; a payment resumes). The first
request holds the key under a lease it renews while it runs: one whose process died (or that could
not release the key, PostgreSQL being down) stops renewing, and a repeat takes the key over once
the lease lapses, within `LEASE`, shorter than a repeat's `WAIT`. Every lease time is PostgreSQL's
(`now()`), never a web host's clock: hosts whose clocks disagree by seconds would otherwise take
over each other's live keys. Keys are kept for `KEEP` (at least a day), then purged by a worker cron.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.params import HeaderParameter

from backend.platform.errors import AppError
from backend.platform.schemas import END
from backend.platform.tables import IdempotencyKey

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=48)
LEASE = timedelta(seconds=10)  # a first request that left its lease unrenewed this long is presumed dead
RENEW_EVERY = 3.0  # seconds between a running first request's renewals of its lease
WAIT = 15.0  # how long a repeat waits for the first request before answering 409
KEY_PATTERN = re.compile(rf"^[\x21-\x7e]{{1,255}}{END}")


def _key_problem(key: str | None) -> AppError | None:
    if key is None:
        message = f"this request moves money: send an {HEADER} header (a unique value per operation)"
        return AppError(message, code="IDEMPOTENCY_KEY_REQUIRED", detail={"field": HEADER})
    if not KEY_PATTERN.match(key):
        return AppError(
            f"{HEADER} must be 1 to 255 visible ASCII characters",
            code="VALIDATION_ERROR",
            detail={"field": HEADER},
        )
    return None


def fingerprint(method: str, path: str, body: Any) -> str:
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(msgspec.json.encode(body))
    return digest.hexdigest()


def request_key(scope: str, key: str, request_fingerprint: str) -> str:
    """What a bill or refund is recorded under: the key and what was asked, so a key reused for
    another request after it was purged makes a new record rather than finding the old one."""
    return hashlib.sha256(f"{scope}\n{key}\n{request_fingerprint}".encode()).hexdigest()


def _replay(status_code: int, body: bytes) -> Response[bytes]:
    return Response(
        body, status_code=status_code, media_type="application/json", headers={"Idempotent-Replayed": "true"}
    )


async def run_once(
    scope: str,
    key: str | None,
    request_fingerprint: str,
    work: Callable[[], Awaitable[tuple[int, Any]]],
) -> Response[bytes]:
    """Run `work` (returning status and a msgspec-encodable body) once per (scope, key)."""
    if (problem := _key_problem(key)) is not None:
        raise problem
    assert key is not None
    claimed = await _claim(scope, key, request_fingerprint)
    if isinstance(claimed, Response):
        return claimed
    try:
        async with _renewing(claimed):
            status_code, body = await work()
    except AppError as exc:
        if exc.status_code >= 500:
            await _release(claimed)
            raise
        error = {"error": {"code": exc.code, "message": exc.message, "detail": exc.detail}}
        await _store(claimed, exc.status_code, msgspec.json.encode(error))
        raise
    except BaseException:
        await _release(claimed)
        raise
    encoded = msgspec.json.encode(body)
    await _store(claimed, status_code, encoded)
    return Response(encoded, status_code=status_code, media_type="application/json")


# A claim is (row id, the time it was taken, as PostgreSQL recorded it): a request whose lease
# lapsed and was taken over by a repeat can no longer store or release what is now the repeat's.
Claim = tuple[int, datetime]


@contextlib.asynccontextmanager
async def _renewing(claim: Claim) -> AsyncIterator[None]:
    """Renew the claim's lease while the body runs (only a request running past `RENEW_EVERY` writes)."""
    done = asyncio.Event()

    async def renew() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), RENEW_EVERY)
            if done.is_set():
                return
            try:
                await IdempotencyKey.raw(
                    "UPDATE idempotency_key SET locked_until = now() + {}::interval"
                    " WHERE id = {} AND created_at = {}",
                    LEASE,
                    *claim,
                )
            except Exception as exc:  # PostgreSQL out of reach: the request fails, or the next renewal works
                log.warning("idempotency lease not renewed", error=repr(exc))

    renewal = asyncio.create_task(renew())
    try:
        yield
    finally:
        done.set()
        await renewal  # a renewal under way ends first, rather than be cut off mid-statement


async def _store(claim: Claim, status_code: int, body: bytes) -> None:
    """Keep the answer for repeats, unless the key was taken over meanwhile (this request's lease
    lapsed, unrenewed): then the repeat's answer is the one kept, and this one is only logged."""
    stored = (
        await IdempotencyKey.update({IdempotencyKey.status_code: status_code, IdempotencyKey.body: body})
        .where((IdempotencyKey.id == claim[0]) & (IdempotencyKey.created_at == claim[1]))
        .returning(IdempotencyKey.id)
    )
    if not stored:
        log.error(
            "idempotency key taken over while its first request ran: its answer is not kept",
            idempotency_key_id=claim[0],
            status_code=status_code,
        )


async def _release(claim: Claim) -> None:
    await IdempotencyKey.delete().where(
        (IdempotencyKey.id == claim[0]) & (IdempotencyKey.created_at == claim[1])
    )


async def _claim(scope: str, key: str, request_fingerprint: str) -> Claim | Response[bytes]:
    """The claim on the key, or the response to replay."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        rows = await IdempotencyKey.raw(
            """
            INSERT INTO idempotency_key (scope, key, fingerprint, locked_until, created_at)
            VALUES ({}, {}, {}, now() + {}::interval, now())
            ON CONFLICT (scope, key) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until,
                  created_at = EXCLUDED.created_at
              WHERE idempotency_key.status_code IS NULL AND idempotency_key.locked_until < now()
                AND idempotency_key.fingerprint = EXCLUDED.fingerprint
            RETURNING id, created_at
            """,
            scope,
            key,
            request_fingerprint,
            LEASE,
        )
        if rows:
            return int(rows[0]["id"]), rows[0]["created_at"]
        existing = (
            await IdempotencyKey.select(
                IdempotencyKey.fingerprint, IdempotencyKey.status_code, IdempotencyKey.body
            )
            .where((IdempotencyKey.scope == scope) & (IdempotencyKey.key == key))
            .first()
        )
        if existing is None:
            continue  # released between our insert and our read: claim again
        if existing["fingerprint"] != request_fingerprint:
            raise AppError(
                f"this {HEADER} was used for a different request; use a new key for a new operation",
                code="IDEMPOTENCY_KEY_REUSED",
                status_code=422,
                detail={"field": HEADER},
            )
        if existing["status_code"] is not None:
            return _replay(existing["status_code"], existing["body"])
        if asyncio.get_running_loop().time() > deadline:
            raise AppError(
                f"a request with this {HEADER} is still running; retry shortly",
                code="IDEMPOTENCY_KEY_IN_USE",
                status_code=409,
                detail={"field": HEADER},
                headers={"Retry-After": "2"},
            )
        await asyncio.sleep(0.05)


async def purge(keep: timedelta = KEEP) -> int:
    """Drop keys older than `keep`; returns how many."""
    rows = await IdempotencyKey.raw(
        "DELETE FROM idempotency_key WHERE created_at < now() - {}::interval RETURNING id", keep
    )
    return len(rows)


# The header of a money-moving POST, for handlers. Documented as the required string it is;
# checked by `run_once`, so that a request without one gets our own `IDEMPOTENCY_KEY_REQUIRED`.
KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        required=True,
        description="A unique value per operation; a repeat with the same body replays the first answer.",
        schema_extra={"one_of": None, "type": "string", "pattern": KEY_PATTERN.pattern},
    ),
]
# Every money-moving POST: its key may be held by a repeat still running, or used for another body.
IDEMPOTENT = (
    (409, "`IDEMPOTENCY_KEY_IN_USE`: a request with this key is still running (`Retry-After`)."),
    (422, "`IDEMPOTENCY_KEY_REUSED`: this key was used for another request."),
)


async def once(
    request: Request[Any, Any, Any],
    scope: str,
    key: str | None,
    data: Any,
    work: Callable[[str], Awaitable[tuple[int, Any]]],
) -> Response[bytes]:
    """Run `work` once per key; it gets the request's key in the form bills and refunds keep."""
    asked = fingerprint(request.method, request.url.path, msgspec.to_builtins(data))
    recorded_under = request_key(scope, key or "", asked)
    return await run_once(scope, key, asked, lambda: work(recorded_under))
