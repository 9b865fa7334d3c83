"""Showing the e-certificate as a single-use QR code, and turning codes and face checks into visits
at an institution, each recorded for fund supervision."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.ecert import people, qr, tables
from backend.ecert.schemas import (
    QrCodeRead,
    VisitOpened,
    VisitRead,
)
from backend.ecert.tables import EcertBinding, EcertDecode, FaceAssertionUse, QrCode, Visit
from backend.hospitals import service as hospitals
from backend.hospitals.service import Institution
from backend.oauth.service import Partner
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.logging import current_correlation_id
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


# -- the QR code ---------------------------------------------------------------------------


async def issue_qr(rt: Runtime, patient: Patient) -> QrCodeRead:
    """A fresh code of the patient's own e-certificate; it voids their older live codes (only the
    newest one on screen works)."""
    async with DB.transaction():
        # The binding's row orders a fetch with unbinding.
        binding = (
            await EcertBinding.select(EcertBinding.id, EcertBinding.insured_id)
            .where((EcertBinding.user_id == patient.user_id) & EcertBinding.unbound_at.is_null())
            .lock_rows()
        )
        if not binding:
            raise people.not_bound()
        code = await _issue(rt, binding[0]["insured_id"], patient.user_id, binding_id=binding[0]["id"])
    return code


async def issue_relative_qr(rt: Runtime, insured_id: int, user_id: int, link_id: int) -> QrCodeRead:
    """A fresh code of a relative, for the holder of the family link that lets them manage the
    relative (the caller has checked it; decoding checks it again)."""
    async with DB.transaction():
        code = await _issue(rt, insured_id, user_id, link_id=link_id)
    return code


async def _issue(
    rt: Runtime, insured_id: int, user_id: int, *, binding_id: int | None = None, link_id: int | None = None
) -> QrCodeRead:
    """Inside the caller's transaction: a code naming the person, voiding their older live codes
    whoever fetched them (their own, a holder's)."""
    ttl = rt.settings.ecert.qr_ttl_seconds
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    code_id = uuid.uuid4()
    # The person's row orders concurrent fetches, by them and by those who manage them.
    await (
        tables.InsuredPerson.select(tables.InsuredPerson.id)
        .where(tables.InsuredPerson.id == insured_id)
        .lock_rows()
    )
    await QrCode.raw(
        """
        WITH voided AS (
            UPDATE ecert_qr_code SET superseded_at = now()
            WHERE insured_id = {} AND used_at IS NULL AND superseded_at IS NULL AND expires_at > now()
        )
        INSERT INTO ecert_qr_code (id, insured_id, binding_id, link_id, issued_by_user_id, issued_at,
                                   expires_at)
        VALUES ({}, {}, {}, {}, {}, now(), {})
        """,
        insured_id,
        code_id,
        insured_id,
        binding_id,
        link_id,
        user_id,
        expires_at,
    )
    payload = qr.encode(code_id, int(expires_at.timestamp()), _qr_key(rt))
    return QrCodeRead(payload=payload, expires_at=expires_at, refresh_in=max(ttl - 10, ttl // 2))


# Whom a user manages under a family link: (user id, link id) -> the relative's insured id, or None.
# The family domain registers it (`check_links_with`): it depends on this one, not the reverse.
LinkCheck = Callable[[int, int], Awaitable[int | None]]
_link_check: LinkCheck | None = None


def check_links_with(check: LinkCheck) -> None:
    global _link_check  # set once, where the app is put together
    _link_check = check


async def _link_still_manages(user_id: int, link_id: int, insured_id: int) -> bool:
    """Whether the link a code was issued under still lets its holder manage the person; with no
    check registered, no such code works."""
    return _link_check is not None and await _link_check(user_id, link_id) == insured_id


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
            FROM insured_person p
            WHERE q.id = {} AND p.id = q.insured_id AND q.used_at IS NULL
              AND q.superseded_at IS NULL AND q.expires_at > now()
              AND (q.binding_id IS NULL OR EXISTS (
                  SELECT 1 FROM ecert_binding b WHERE b.id = q.binding_id AND b.unbound_at IS NULL))
            RETURNING p.id, p.name_masked, p.id_type, p.id_number_masked, p.insurance_type,
                      p.region_code, q.link_id, q.issued_by_user_id
            """,
            code_id,
        )
        if not rows:
            raise await _why_not_usable(code_id)
        code = rows[0]
        if code["link_id"] is not None and not await _link_still_manages(
            code["issued_by_user_id"], code["link_id"], code["id"]
        ):
            # The holder no longer manages this relative (link ended, `manage` taken back): as if
            # their binding were gone, the code has lapsed.
            raise AppError(
                "the family link this code was shown under has ended; ask for a fresh one",
                code="ECERT_QR_EXPIRED",
                status_code=410,
            )
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
    digest = rt.vault.digest(people.identity_key(identity.id_type, identity.id_number))
    jti = assertion_id(assertion)
    async with DB.transaction():
        person = (
            await tables.InsuredPerson.select(tables.InsuredPerson.id, *people.MASKED_COLUMNS)
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


def assertion_id(assertion: str) -> str:
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
        patient=people.masked(person),
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
        patient=people.masked(visit),
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
