"""Binding an e-certificate to a patient's account, verified by the e-certificate platform; unbinding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError

from backend.auth.service import Patient
from backend.ecert import documents, people, tables
from backend.ecert.schemas import (
    BindRequest,
    EcertRead,
)
from backend.ecert.tables import EcertBinding, QrCode
from backend.partners.ecert import EcertIdentity, EcertRefusal
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def bind(rt: Runtime, patient: Patient, request: BindRequest) -> EcertRead:
    id_number = documents.normalize(request.id_number)
    if (problem := documents.problem(request.id_type, id_number)) is not None:
        raise AppError(f"id_number: {problem}", code="VALIDATION_ERROR", detail={"field": "id_number"})
    if await EcertBinding.exists().where(
        (EcertBinding.user_id == patient.user_id) & EcertBinding.unbound_at.is_null()
    ):
        raise Conflict(
            "this account already has an e-certificate; unbind it first",
            code="ECERT_USER_ALREADY_BOUND",
        )
    face = request.face_assertion if isinstance(request.face_assertion, str) else None
    async with bind_attempt(rt, patient.user_id):
        identity = await rt.partners.ecert.verify_identity(request.name, request.id_type, id_number, face)
    if (identity.id_type, documents.normalize(identity.id_number)) != (request.id_type, id_number):
        raise rt.partners.ecert.bad_answer("it vouched for another document than the one asked")
    async with DB.transaction():
        try:
            insured_id = await _remember(rt, identity)
            await EcertBinding.insert(
                EcertBinding(
                    user_id=patient.user_id,
                    insured_id=insured_id,
                    channel=patient.channel,
                    bound_at=datetime.now(UTC),
                )
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "ecert_binding_live_user":  # a concurrent bind won
                raise Conflict(
                    "this account already has an e-certificate", code="ECERT_USER_ALREADY_BOUND"
                ) from exc
            if exc.constraint_name == "ecert_binding_live_identity":
                raise Conflict(
                    "this e-certificate is bound to another account on this channel",
                    code="ECERT_ALREADY_BOUND",
                ) from exc
            log.error("insured person conflicts with another", constraint=exc.constraint_name)
            raise Conflict(
                "the platform's record of this person conflicts with another; contact support",
                code="ECERT_RECORD_CONFLICT",
            ) from exc
    log.info("e-certificate bound", user_id=patient.user_id, insured_id=insured_id)
    return await current(patient)


async def verify_person(
    rt: Runtime, user_id: int, name: str, id_type: str, id_number: str, face_assertion: str | None
) -> EcertIdentity:
    """A person the platform verifies by name and document (and face) for this user, a relative
    without a phone; counted against the user's attempts as a bind is. Nothing is written."""
    id_number = documents.normalize(id_number)
    if (problem := documents.problem(id_type, id_number)) is not None:
        raise AppError(f"id_number: {problem}", code="VALIDATION_ERROR", detail={"field": "id_number"})
    async with bind_attempt(rt, user_id):
        identity = await rt.partners.ecert.verify_identity(name, id_type, id_number, face_assertion)
    if (identity.id_type, documents.normalize(identity.id_number)) != (id_type, id_number):
        raise rt.partners.ecert.bad_answer("it vouched for another document than the one asked")
    return identity


async def remember(rt: Runtime, identity: EcertIdentity) -> int:
    """The insured person the platform vouched for, inserted or refreshed inside the caller's
    transaction: their id."""
    return await _remember(rt, identity)


@asynccontextmanager
async def bind_attempt(rt: Runtime, user_id: int) -> AsyncIterator[None]:
    """Count the attempt before asking the platform, so concurrent guesses cannot slip past the
    limit; only attempts the platform refused stay counted."""
    key = f"ecert:bind-failures:{user_id}"
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    if ttl < 0:
        ttl = rt.settings.ecert.bind_failure_window_seconds
        await rt.redis.expire(key, ttl)
    if count > rt.settings.ecert.bind_failures_allowed:
        raise AppError(
            "too many failed attempts to bind; try again later",
            code="ECERT_BIND_RATE_LIMITED",
            status_code=429,
            headers={"Retry-After": str(max(ttl, 1))},
        )
    try:
        yield
    except EcertRefusal:
        raise
    except BaseException:
        await _give_back(rt, key)
        raise
    await _give_back(rt, key)


async def _give_back(rt: Runtime, key: str) -> None:
    """Stop counting an attempt the platform did not refuse. One that Redis could not take back
    counts on until its window ends (the key's TTL): an attempt more against the user, never a
    bind the platform vouched for answered 503."""
    try:
        await rt.redis.decr(key)
    except (RedisError, OSError) as exc:
        log.warning("bind attempt not given back", error=repr(exc))


async def _remember(rt: Runtime, identity: EcertIdentity) -> int:
    """Insert or refresh the insured person the platform vouched for; their id."""
    vault, now = rt.vault, datetime.now(UTC)
    id_number = documents.normalize(identity.id_number)
    digest = vault.digest(people.identity_key(identity.id_type, id_number))
    rows = await tables.InsuredPerson.raw(
        """
        INSERT INTO insured_person (id_digest, id_type, id_number_enc, name_enc, id_number_masked,
            name_masked, cert_no, region_code, insurance_type, opening_balance_fen,
            created_at, updated_at)
        VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
        ON CONFLICT (id_digest) DO UPDATE SET
            name_enc = EXCLUDED.name_enc, name_masked = EXCLUDED.name_masked,
            cert_no = EXCLUDED.cert_no, region_code = EXCLUDED.region_code,
            insurance_type = EXCLUDED.insurance_type, updated_at = EXCLUDED.updated_at
        RETURNING id
        """,
        digest,
        identity.id_type,
        # Bound to column and person: a ciphertext moved to another row or column won't open.
        vault.encrypt(id_number, f"insured_person.id_number:{digest}"),
        vault.encrypt(identity.name, f"insured_person.name:{digest}"),
        documents.mask_id(id_number),
        documents.mask_name(identity.name),
        identity.cert_no,
        identity.region_code,
        identity.insurance_type,
        identity.personal_account_balance_fen,
        now,
        now,
    )
    return int(rows[0]["id"])


async def _live_binding(user_id: int) -> dict[str, Any] | None:
    rows = await EcertBinding.raw(
        """
        SELECT b.id, b.channel, b.bound_at, p.cert_no, p.name_masked, p.id_type,
               p.id_number_masked, p.insurance_type, p.region_code
        FROM ecert_binding b JOIN insured_person p ON p.id = b.insured_id
        WHERE b.user_id = {} AND b.unbound_at IS NULL
        """,
        user_id,
    )
    return rows[0] if rows else None


async def current(patient: Patient) -> EcertRead:
    binding = await _live_binding(patient.user_id)
    if binding is None:
        raise people.not_bound()
    return EcertRead(
        cert_no=binding["cert_no"],
        identity=people.masked(binding),
        channel=binding["channel"],
        bound_at=binding["bound_at"],
    )


async def unbind(patient: Patient) -> None:
    """End the binding (the row stays, as history) and void its live codes."""
    now = datetime.now(UTC)
    async with DB.transaction():
        rows = await EcertBinding.raw(
            "UPDATE ecert_binding SET unbound_at = {} WHERE user_id = {} AND unbound_at IS NULL RETURNING id",
            now,
            patient.user_id,
        )
        if not rows:
            raise people.not_bound()
        await QrCode.update({QrCode.superseded_at: now}).where(
            (QrCode.binding_id == rows[0]["id"]) & QrCode.used_at.is_null()
        )
    log.info("e-certificate unbound", user_id=patient.user_id)
