"""Binding an e-certificate, showing it as a QR code, and turning codes and faces into visits."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.ecert import documents, qr
from backend.ecert.schemas import (
    BindRequest,
    EcertRead,
    MaskedIdentity,
    QrCodeRead,
    VisitOpened,
    VisitRead,
)
from backend.ecert.tables import (
    EcertBinding,
    EcertDecode,
    FaceAssertionUse,
    InsuredPerson,
    QrCode,
    Visit,
)
from backend.hospitals.tables import Institution
from backend.oauth.service import Partner
from backend.partners.ecert import EcertIdentity, EcertRefusal
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.logging import current_correlation_id
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)

NOT_BOUND = NotFound("no e-certificate is bound to this account", code="ECERT_NOT_BOUND")


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
    failures_key = f"ecert:bind-failures:{patient.user_id}"
    if int(await rt.redis.get(failures_key) or 0) >= rt.settings.ecert.bind_failures_allowed:
        wait = max(int(await rt.redis.ttl(failures_key)), 1)
        raise AppError(
            "too many failed attempts to bind; try again later",
            code="ECERT_BIND_RATE_LIMITED",
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    if await EcertBinding.exists().where(
        (EcertBinding.user_id == patient.user_id) & EcertBinding.unbound_at.is_null()
    ):
        raise Conflict(
            "this account already has an e-certificate; unbind it first",
            code="ECERT_USER_ALREADY_BOUND",
        )
    face = request.face_assertion if isinstance(request.face_assertion, str) else None
    try:
        identity = await rt.partners.ecert.verify_identity(
            request.name.strip(), request.id_type, id_number, face
        )
    except EcertRefusal:
        async with rt.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, rt.settings.ecert.bind_failure_window_seconds, nx=True)
            await pipe.execute()
        raise
    async with DB.transaction():
        insured_id = await _remember(rt, identity)
        try:
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
            raise Conflict(
                "this e-certificate is bound to another account on this channel",
                code="ECERT_ALREADY_BOUND",
            ) from exc
    log.info("e-certificate bound", user_id=patient.user_id, insured_id=insured_id)
    return await current(patient)


async def _remember(rt: Runtime, identity: EcertIdentity) -> int:
    """Insert or refresh the insured person the platform vouched for; their id."""
    vault, now = rt.vault, datetime.now(UTC)
    id_number = documents.normalize(identity.id_number)
    rows = await InsuredPerson.raw(
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
        vault.digest(_identity_key(identity.id_type, id_number)),
        identity.id_type,
        vault.encrypt(id_number, "insured_person.id_number"),
        vault.encrypt(identity.name, "insured_person.name"),
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
        raise NOT_BOUND
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
            raise NOT_BOUND
        await QrCode.update({QrCode.superseded_at: now}).where(
            (QrCode.binding_id == rows[0]["id"]) & QrCode.used_at.is_null()
        )
    log.info("e-certificate unbound", user_id=patient.user_id)


# -- the QR code ---------------------------------------------------------------------------


async def issue_qr(rt: Runtime, patient: Patient) -> QrCodeRead:
    """A fresh code; it voids the patient's older live codes (only the newest one on screen works)."""
    binding = await _live_binding(patient.user_id)
    if binding is None:
        raise NOT_BOUND
    ttl = rt.settings.ecert.qr_ttl_seconds
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=ttl)
    code_id = uuid.uuid4()
    async with DB.transaction():
        await QrCode.update({QrCode.superseded_at: now}).where(
            (QrCode.binding_id == binding["id"])
            & QrCode.used_at.is_null()
            & QrCode.superseded_at.is_null()
            & (QrCode.expires_at > now)
        )
        await QrCode.insert(
            QrCode(id=code_id, binding_id=binding["id"], issued_at=now, expires_at=expires_at)
        )
    payload = qr.encode(code_id, int(expires_at.timestamp()), _qr_key(rt))
    return QrCodeRead(payload=payload, expires_at=expires_at, refresh_in=max(ttl - 10, ttl // 2))


def _qr_key(rt: Runtime) -> bytes:
    return base64.b64decode(rt.settings.ecert.qr_key)


async def decode_qr(rt: Runtime, partner: Partner, payload: str) -> VisitOpened:
    institution = await _institution_of(partner)
    try:
        code_id, expires_at = qr.decode(payload, _qr_key(rt))
    except qr.InvalidCode:
        raise AppError(
            "this is not a valid e-certificate code", code="ECERT_QR_INVALID", detail={"field": "qr"}
        ) from None
    if expires_at <= datetime.now(UTC).timestamp():
        raise _expired()
    async with DB.transaction():
        rows = await QrCode.raw(
            """
            UPDATE ecert_qr_code q SET used_at = now()
            FROM ecert_binding b
            WHERE q.id = {} AND b.id = q.binding_id AND q.used_at IS NULL
              AND q.superseded_at IS NULL AND q.expires_at > now() AND b.unbound_at IS NULL
            RETURNING b.insured_id
            """,
            code_id,
        )
        if not rows:
            raise await _why_not_usable(code_id)
        visit = await _open_visit(rt, partner, institution, rows[0]["insured_id"], "qr")
    return visit


def _expired() -> AppError:
    return AppError("this code has expired; ask for a fresh one", code="ECERT_QR_EXPIRED", status_code=410)


async def _why_not_usable(code_id: uuid.UUID) -> AppError:
    code = await QrCode.select(QrCode.used_at, QrCode.superseded_at).where(QrCode.id == code_id).first()
    if code is None:
        return AppError(
            "this is not a valid e-certificate code", code="ECERT_QR_INVALID", detail={"field": "qr"}
        )
    if code["used_at"] is not None:
        return Conflict("this code was already used", code="ECERT_QR_USED")
    if code["superseded_at"] is not None:
        return Conflict("a newer code replaced this one", code="ECERT_QR_SUPERSEDED")
    return _expired()


# -- the face check ------------------------------------------------------------------------


async def identify_face(rt: Runtime, partner: Partner, assertion: str) -> VisitOpened:
    institution = await _institution_of(partner)
    identity = await rt.partners.ecert.verify_face(assertion)
    digest = rt.vault.digest(_identity_key(identity.id_type, identity.id_number))
    jti = _assertion_id(assertion)
    async with DB.transaction():
        person = await InsuredPerson.select(InsuredPerson.id).where(InsuredPerson.id_digest == digest).first()
        if person is None or not await EcertBinding.exists().where(
            (EcertBinding.insured_id == person["id"]) & EcertBinding.unbound_at.is_null()
        ):
            raise NotFound("this person has not bound an e-certificate", code="ECERT_NOT_BOUND")
        try:
            await FaceAssertionUse.insert(FaceAssertionUse(jti=jti, used_at=datetime.now(UTC)))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("this face assertion was already used", code="ECERT_FACE_REPLAYED") from exc
        visit = await _open_visit(rt, partner, institution, person["id"], "face")
    return visit


def _assertion_id(assertion: str) -> str:
    """The assertion's `jti` (its signature was checked by the platform), or its hash."""
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        return str(claims["jti"])[:64]
    except (IndexError, KeyError, TypeError, ValueError, msgspec.DecodeError):
        return hashlib.sha256(assertion.encode()).hexdigest()


# -- visits --------------------------------------------------------------------------------


async def _institution_of(partner: Partner) -> dict[str, Any]:
    if partner.institution_code is None:
        raise Forbidden("only an institution's terminals identify patients", code="NOT_AN_INSTITUTION")
    institution = (
        await Institution.select(Institution.id, Institution.code)
        .where(Institution.code == partner.institution_code)
        .first()
    )
    if institution is None:
        raise Forbidden("this partner's institution is unknown", code="NOT_AN_INSTITUTION")
    return institution


async def _open_visit(
    rt: Runtime, partner: Partner, institution: dict[str, Any], insured_id: int, method: str
) -> VisitOpened:
    """Inside the caller's transaction: a visit, and the decode record for fund supervision."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=rt.settings.ecert.visit_ttl_seconds)
    visit = await Visit.insert(
        Visit(
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            insured_id=insured_id,
            institution_id=institution["id"],
            opened_by=partner.client_id,
            method=method,
            created_at=now,
            expires_at=expires_at,
        )
    ).returning(Visit.id)
    await EcertDecode.insert(
        EcertDecode(
            insured_id=insured_id,
            institution_id=institution["id"],
            client_id=partner.client_id,
            method=method,
            visit_id=visit[0]["id"],
            correlation_id=current_correlation_id(),
            created_at=now,
        )
    )
    person = await InsuredPerson.select().where(InsuredPerson.id == insured_id).first()
    assert person is not None
    log.info("visit opened", insured_id=insured_id, institution=institution["code"], method=method)
    return VisitOpened(
        visit_token=token,
        expires_at=expires_at,
        method="qr" if method == "qr" else "face",
        institution=institution["code"],
        patient=_masked(person),
    )


async def resolve_visit(token: str, partner: Partner) -> VisitRead:
    """The visit behind a token, for a partner of the institution it was opened at."""
    rows = await Visit.raw(
        """
        SELECT v.expires_at, v.method, i.code AS institution, p.name_masked, p.id_type,
               p.id_number_masked, p.insurance_type, p.region_code
        FROM visit v JOIN institution i ON i.id = v.institution_id
        JOIN insured_person p ON p.id = v.insured_id
        WHERE v.token_hash = {} AND v.expires_at > now()
        """,
        hashlib.sha256(token.encode()).hexdigest(),
    )
    if not rows:
        raise NotFound("no such visit, or it has ended", code="VISIT_NOT_FOUND")
    visit = rows[0]
    if visit["institution"] != partner.institution_code:
        raise Forbidden("this visit belongs to another institution", code="VISIT_WRONG_INSTITUTION")
    return VisitRead(
        expires_at=visit["expires_at"],
        method=visit["method"],
        institution=visit["institution"],
        patient=_masked(visit),
    )
