"""Binding an e-certificate, showing it as a QR code, and turning codes and faces into visits."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.ecert import documents, qr, tables
from backend.ecert.schemas import (
    BindRequest,
    EcertRead,
    MaskedIdentity,
    QrCodeRead,
    VisitOpened,
    VisitRead,
)
from backend.ecert.tables import EcertBinding, EcertDecode, FaceAssertionUse, QrCode, Visit
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.oauth.service import Partner
from backend.partners.ecert import EcertIdentity, EcertRefusal
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.logging import current_correlation_id
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


def _not_bound() -> NotFound:
    return NotFound("no e-certificate is bound to this account", code="ECERT_NOT_BOUND")


MASKED_COLUMNS = (
    tables.InsuredPerson.name_masked,
    tables.InsuredPerson.id_type,
    tables.InsuredPerson.id_number_masked,
    tables.InsuredPerson.insurance_type,
    tables.InsuredPerson.region_code,
)


def _masked(person: dict[str, Any]) -> MaskedIdentity:
    return MaskedIdentity(
        name=person["name_masked"],
        id_type=person["id_type"],
        id_number=person["id_number_masked"],
        insurance_type=person["insurance_type"],
        region_code=person["region_code"],
    )


def _identity_key(id_type: str, id_number: str) -> str:
    return f"{id_type}:{documents.normalize(id_number)}"


# -- binding -------------------------------------------------------------------------------


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
    async with _bind_attempt(rt, patient.user_id):
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


@asynccontextmanager
async def _bind_attempt(rt: Runtime, user_id: int) -> AsyncIterator[None]:
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
        await rt.redis.decr(key)
        raise
    await rt.redis.decr(key)


async def _remember(rt: Runtime, identity: EcertIdentity) -> int:
    """Insert or refresh the insured person the platform vouched for; their id."""
    vault, now = rt.vault, datetime.now(UTC)
    id_number = documents.normalize(identity.id_number)
    digest = vault.digest(_identity_key(identity.id_type, id_number))
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
        raise _not_bound()
    return EcertRead(
        cert_no=binding["cert_no"],
        identity=_masked(binding),
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
            raise _not_bound()
        await QrCode.update({QrCode.superseded_at: now}).where(
            (QrCode.binding_id == rows[0]["id"]) & QrCode.used_at.is_null()
        )
    log.info("e-certificate unbound", user_id=patient.user_id)


# -- the QR code ---------------------------------------------------------------------------


async def issue_qr(rt: Runtime, patient: Patient) -> QrCodeRead:
    """A fresh code; it voids the patient's older live codes (only the newest one on screen works)."""
    ttl = rt.settings.ecert.qr_ttl_seconds
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=ttl)
    code_id = uuid.uuid4()
    async with DB.transaction():
        # The binding's row orders concurrent fetches (and unbinding): one live code at a time.
        binding = await EcertBinding.raw(
            "SELECT id FROM ecert_binding WHERE user_id = {} AND unbound_at IS NULL FOR UPDATE",
            patient.user_id,
        )
        if not binding:
            raise _not_bound()
        await QrCode.raw(
            """
            WITH voided AS (
                UPDATE ecert_qr_code SET superseded_at = now()
                WHERE binding_id = {} AND used_at IS NULL AND superseded_at IS NULL
                  AND expires_at > now()
            )
            INSERT INTO ecert_qr_code (id, binding_id, issued_at, expires_at)
            VALUES ({}, {}, now(), {})
            """,
            binding[0]["id"],
            code_id,
            binding[0]["id"],
            expires_at,
        )
    payload = qr.encode(code_id, int(expires_at.timestamp()), _qr_key(rt))
    return QrCodeRead(payload=payload, expires_at=expires_at, refresh_in=max(ttl - 10, ttl // 2))


def _qr_key(rt: Runtime) -> bytes:
    return base64.b64decode(rt.settings.ecert.qr_key)


async def decode_qr(rt: Runtime, partner: Partner, payload: str) -> VisitOpened:
    institution = await _institution_of(partner)
    async with _supervised(partner, institution, "qr"):
        return await _decode_qr(rt, partner, institution, payload)


async def _decode_qr(rt: Runtime, partner: Partner, institution: Institution, payload: str) -> VisitOpened:
    try:
        code_id, expires_at = qr.decode(payload, _qr_key(rt))
    except qr.InvalidCode:
        raise _invalid_code() from None
    if expires_at <= datetime.now(UTC).timestamp():
        raise _expired()
    async with DB.transaction():
        rows = await QrCode.raw(
            """
            UPDATE ecert_qr_code q SET used_at = now()
            FROM ecert_binding b JOIN insured_person p ON p.id = b.insured_id
            WHERE q.id = {} AND b.id = q.binding_id AND q.used_at IS NULL
              AND q.superseded_at IS NULL AND q.expires_at > now() AND b.unbound_at IS NULL
            RETURNING p.id, p.name_masked, p.id_type, p.id_number_masked, p.insurance_type,
                      p.region_code
            """,
            code_id,
        )
        if not rows:
            raise await _why_not_usable(code_id)
        visit = await _open_visit(rt, partner, institution, rows[0], "qr")
    return visit


def _invalid_code() -> AppError:
    return AppError("this is not a valid e-certificate code", code="ECERT_QR_INVALID", detail={"field": "qr"})


def _expired() -> AppError:
    return AppError("this code has expired; ask for a fresh one", code="ECERT_QR_EXPIRED", status_code=410)


async def _why_not_usable(code_id: uuid.UUID) -> AppError:
    code = await QrCode.select(QrCode.used_at, QrCode.superseded_at).where(QrCode.id == code_id).first()
    if code is None:
        return _invalid_code()
    if code["used_at"] is not None:
        return Conflict("this code was already used", code="ECERT_QR_USED")
    if code["superseded_at"] is not None:
        return Conflict("a newer code replaced this one", code="ECERT_QR_SUPERSEDED")
    return _expired()


# -- the face check ------------------------------------------------------------------------


async def identify_face(rt: Runtime, partner: Partner, assertion: str) -> VisitOpened:
    institution = await _institution_of(partner)
    async with _supervised(partner, institution, "face"):
        return await _identify_face(rt, partner, institution, assertion)


async def _identify_face(
    rt: Runtime, partner: Partner, institution: Institution, assertion: str
) -> VisitOpened:
    identity = await rt.partners.ecert.verify_face(assertion)
    digest = rt.vault.digest(_identity_key(identity.id_type, identity.id_number))
    jti = _assertion_id(assertion)
    async with DB.transaction():
        person = (
            await tables.InsuredPerson.select(tables.InsuredPerson.id, *MASKED_COLUMNS)
            .where(tables.InsuredPerson.id_digest == digest)
            .first()
        )
        if person is None or not await EcertBinding.exists().where(
            (EcertBinding.insured_id == person["id"]) & EcertBinding.unbound_at.is_null()
        ):
            raise NotFound("this person has not bound an e-certificate", code="ECERT_NOT_BOUND")
        try:
            await FaceAssertionUse.insert(FaceAssertionUse(jti=jti, used_at=datetime.now(UTC)))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("this face assertion was already used", code="ECERT_FACE_REPLAYED") from exc
        visit = await _open_visit(rt, partner, institution, person, "face")
    return visit


def _assertion_id(assertion: str) -> str:
    """The assertion's `jti` (its signature was checked by the platform), or its hash."""
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        return str(claims["jti"])[:64]
    except (IndexError, KeyError, TypeError, ValueError, msgspec.DecodeError):
        return hashlib.sha256(assertion.encode()).hexdigest()


# -- visits --------------------------------------------------------------------------------


async def _institution_of(partner: Partner) -> Institution:
    if partner.institution_code is None:
        raise Forbidden("only an institution's terminals identify patients", code="NOT_AN_INSTITUTION")
    institution = await hospitals.find(partner.institution_code)
    if institution is None:
        raise Forbidden("this partner's institution is unknown", code="NOT_AN_INSTITUTION")
    return institution


@asynccontextmanager
async def _supervised(partner: Partner, institution: Institution, method: str) -> AsyncIterator[None]:
    """Record a refused identification too (after its transaction rolled back): forgeries and
    replays are what fund supervision looks for."""
    try:
        yield
    except AppError as exc:
        await EcertDecode.insert(
            EcertDecode(
                institution_id=institution.id,
                client_id=partner.client_id,
                method=method,
                outcome=exc.code,
                correlation_id=current_correlation_id(),
                created_at=datetime.now(UTC),
            )
        )
        raise


async def _open_visit(
    rt: Runtime,
    partner: Partner,
    institution: Institution,
    person: dict[str, Any],
    method: Literal["qr", "face"],
) -> VisitOpened:
    """Inside the caller's transaction: a visit for `person` (their id and masked identity), and
    the decode record for fund supervision."""
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=rt.settings.ecert.visit_ttl_seconds)
    await Visit.raw(
        """
        WITH visit AS (
            INSERT INTO visit (token_hash, insured_id, institution_id, opened_by, method,
                               created_at, expires_at)
            VALUES ({}, {}, {}, {}, {}, now(), {})
            RETURNING id, insured_id, institution_id, opened_by, method
        )
        INSERT INTO ecert_decode (insured_id, institution_id, client_id, method, outcome,
                                  visit_id, correlation_id, created_at)
        SELECT insured_id, institution_id, opened_by, method, 'visit_opened', id, {}, now()
        FROM visit
        """,
        hashlib.sha256(token.encode()).hexdigest(),
        person["id"],
        institution.id,
        partner.client_id,
        method,
        expires_at,
        current_correlation_id(),
    )
    log.info("visit opened", insured_id=person["id"], institution=institution.code, method=method)
    return VisitOpened(
        visit_token=token,
        expires_at=expires_at,
        method=method,
        institution=institution.code,
        patient=_masked(person),
    )


async def resolve_visit(token: str, partner: Partner) -> VisitRead:
    """The visit behind a token, for a partner of the institution it was opened at."""
    rows = await Visit.raw(
        """
        SELECT v.expires_at, v.method, v.institution_id, p.name_masked, p.id_type,
               p.id_number_masked, p.insurance_type, p.region_code
        FROM visit v JOIN insured_person p ON p.id = v.insured_id
        WHERE v.token_hash = {} AND v.expires_at > now()
        """,
        hashlib.sha256(token.encode()).hexdigest(),
    )
    if not rows:
        raise NotFound("no such visit, or it has ended", code="VISIT_NOT_FOUND")
    visit = rows[0]
    institution = await hospitals.get(visit["institution_id"])
    if institution.code != partner.institution_code:
        raise Forbidden("this visit belongs to another institution", code="VISIT_WRONG_INSTITUTION")
    return VisitRead(
        expires_at=visit["expires_at"],
        method=visit["method"],
        institution=institution.code,
        patient=_masked(visit),
    )


async def purge_spent(keep: timedelta = timedelta(days=1)) -> int:
    """Drop QR codes and face-assertion ids past any use: codes live a minute, assertions two."""
    cutoff = datetime.now(UTC) - keep
    codes = await QrCode.delete().where(QrCode.expires_at < cutoff).returning(QrCode.id)
    faces = (
        await FaceAssertionUse.delete()
        .where(FaceAssertionUse.used_at < cutoff)
        .returning(FaceAssertionUse.id)
    )
    return len(codes) + len(faces)


# -- for other domains: who a bill is for, and who may see it --------------------------------


async def visit_for_bill(token: str, partner: Partner) -> tuple[int, int]:
    """(visit id, insured person id) of a live visit at the partner's institution."""
    visit = (
        await Visit.select(Visit.id, Visit.insured_id, Visit.institution_id)
        .where(
            (Visit.token_hash == hashlib.sha256(token.encode()).hexdigest())
            & (Visit.expires_at > datetime.now(UTC))
        )
        .first()
    )
    if visit is None:
        raise NotFound(
            "no such visit, or it has ended", code="VISIT_NOT_FOUND", detail={"field": "visit_token"}
        )
    if (await hospitals.get(visit["institution_id"])).code != partner.institution_code:
        raise Forbidden(
            "this visit belongs to another institution",
            code="VISIT_WRONG_INSTITUTION",
            detail={"field": "visit_token"},
        )
    return int(visit["id"]), int(visit["insured_id"])


async def insured_by_cert_no(cert_no: str) -> int:
    """The insured person holding this e-certificate number (bound here at least once)."""
    row = (
        await tables.InsuredPerson.select(tables.InsuredPerson.id)
        .where(tables.InsuredPerson.cert_no == cert_no)
        .first()
    )
    if row is None:
        raise NotFound(
            "no insured person with this cert_no", code="INSURED_NOT_FOUND", detail={"field": "cert_no"}
        )
    return int(row["id"])


async def has_visited(insured_id: int, institution_id: int, since: datetime) -> bool:
    """Whether the person was identified at the institution (QR code or face) since `since`."""
    return bool(
        await Visit.exists().where(
            (Visit.insured_id == insured_id)
            & (Visit.institution_id == institution_id)
            & (Visit.created_at >= since)
        )
    )


class InsuredPerson(msgspec.Struct, frozen=True):
    """What settlement needs of an insured person, and how they are shown (masked)."""

    id: int
    region_code: str
    insurance_type: Literal["employee", "resident"]
    opening_balance_fen: int  # the personal account as the platform reported it at binding
    masked: MaskedIdentity


async def insured_person(insured_id: int) -> InsuredPerson:
    row = (
        await tables.InsuredPerson.select(
            tables.InsuredPerson.id, tables.InsuredPerson.opening_balance_fen, *MASKED_COLUMNS
        )
        .where(tables.InsuredPerson.id == insured_id)
        .first()
    )
    if row is None:
        raise NotFound("no such insured person", code="INSURED_NOT_FOUND")
    return InsuredPerson(
        id=row["id"],
        region_code=row["region_code"],
        insurance_type=row["insurance_type"],
        opening_balance_fen=row["opening_balance_fen"],
        masked=_masked(row),
    )


async def insured_of_user(user_id: int) -> list[int]:
    """The insured people whose bills this user may see and pay: their own live binding."""
    binding = await EcertBinding.select(EcertBinding.insured_id).where(
        (EcertBinding.user_id == user_id) & EcertBinding.unbound_at.is_null()
    )
    return [int(row["insured_id"]) for row in binding]


async def users_of_insured(insured_id: int) -> list[int]:
    """The users with a live binding to this person (to notify about their bills)."""
    rows = await EcertBinding.select(EcertBinding.user_id).where(
        (EcertBinding.insured_id == insured_id) & EcertBinding.unbound_at.is_null()
    )
    return [int(row["user_id"]) for row in rows]
