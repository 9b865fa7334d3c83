"""The e-certificate's face for other domains: who a bill is for, who may see it, how to show them."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Literal

import asyncpg
import msgspec

from backend.ecert import binding, documents, newborns, people, tables, visits
from backend.ecert.schemas import MaskedIdentity, QrCodeRead
from backend.ecert.tables import EcertBinding, Visit
from backend.hospitals import service as hospitals
from backend.oauth.service import Partner
from backend.partners.ecert import EcertIdentity
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.runtime import Runtime
from backend.platform.vault import Vault


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
            tables.InsuredPerson.id, tables.InsuredPerson.opening_balance_fen, *people.MASKED_COLUMNS
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
        masked=people.masked(row),
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


async def bound_user(insured_id: int) -> int | None:
    """The account acting as this person: the one bound first (the lower id), when they have
    bound the e-certificate on both WeChat and Alipay; None when they have none."""
    users = await users_of_insured(insured_id)
    return min(users) if users else None


async def users_of_many(insured_ids: list[int]) -> dict[int, list[int]]:
    """`users_of_insured` for many people in one query (reminder runs)."""
    rows = await EcertBinding.select(EcertBinding.insured_id, EcertBinding.user_id).where(
        EcertBinding.insured_id.is_in(insured_ids) & EcertBinding.unbound_at.is_null()
    )
    users: dict[int, list[int]] = {}
    for row in rows:
        users.setdefault(int(row["insured_id"]), []).append(int(row["user_id"]))
    return users


# Documents whose number carries the holder's birth date (digits 7 to 14: YYYYMMDD).
_DATED_DOCUMENTS = ("resident_id", "hk_macau_tw_residence")


async def age_of(vault: Vault, insured_id: int, today: date) -> int | None:
    """The person's age in whole years, from their document; None when it does not say."""
    row = (
        await tables.InsuredPerson.select(
            tables.InsuredPerson.id_type, tables.InsuredPerson.id_number_enc, tables.InsuredPerson.id_digest
        )
        .where(tables.InsuredPerson.id == insured_id)
        .first()
    )
    if row is None or row["id_type"] not in _DATED_DOCUMENTS:
        return None
    number = vault.decrypt(row["id_number_enc"], f"insured_person.id_number:{row['id_digest']}")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def checked_document(id_type: str, id_number: str) -> str:
    """The document number normalized, or 400 `VALIDATION_ERROR` on `id_number` (before any call)."""
    number = documents.normalize(id_number)
    if (problem := documents.problem(id_type, number)) is not None:
        raise AppError(f"id_number: {problem}", code="VALIDATION_ERROR", detail={"field": "id_number"})
    return number


async def verify_person(
    rt: Runtime, user_id: int, name: str, id_type: str, id_number: str, face_assertion: str | None
) -> EcertIdentity:
    """A person the platform verifies by name and document (and face), for this user (a relative
    without a phone of their own); refusals are the platform's, as at binding. Nothing is written."""
    return await binding.verify_person(rt, user_id, name, id_type, id_number, face_assertion)


async def remember(rt: Runtime, identity: EcertIdentity) -> int:
    """Record a verified person inside the caller's transaction; their insured person's id."""
    return await binding.remember(rt, identity)


def checked_birth_certificate(number: str) -> str:
    """A birth-certificate number normalized, or 422 `VALIDATION_ERROR` on `birth_certificate_no`."""
    number = documents.normalize(number)
    if (problem := documents.birth_certificate_problem(number)) is not None:
        raise AppError(
            f"birth_certificate_no: {problem}",
            code="VALIDATION_ERROR",
            status_code=422,
            detail={"field": "birth_certificate_no"},
        )
    return number


async def enrol_newborn(
    rt: Runtime, user_id: int, guardian_id: int, birth_certificate_no: str, name: str, birth_date: date
) -> EcertIdentity:
    """The platform enrols a newborn in resident insurance on the word of a guardian whose own
    e-certificate is bound; refusals are the platform's, counted as at binding. Nothing is written:
    `remember` the identity inside the caller's transaction."""
    return await newborns.enrol(rt, user_id, guardian_id, birth_certificate_no, name, birth_date)


async def newborn_known(rt: Runtime, birth_certificate_no: str) -> int | None:
    """The insured person enrolled with this birth certificate, if recorded here."""
    return await newborns.known(rt, birth_certificate_no)


async def issue_relative_qr(rt: Runtime, insured_id: int, user_id: int, link_id: int) -> QrCodeRead:
    """A fresh QR code of a relative for the holder of `link_id`, which must let them manage the
    relative when it is decoded (see `check_links_with`); it voids the relative's older codes."""
    return await visits.issue_relative_qr(rt, insured_id, user_id, link_id)


def check_links_with(check: visits.LinkCheck) -> None:
    """Register how a code issued under a family link is checked at decoding: (the issuing user,
    the link) -> the relative it lets them manage now, or None. The family domain owns links."""
    visits.check_links_with(check)


async def document_of(vault: Vault, insured_id: int) -> tuple[str, str, str]:
    """(name, document type, document number) of an insured person, decrypted: only for a partner
    whose published format asks for them (a channel told whom a relative pays for)."""
    row = (
        await tables.InsuredPerson.select(
            tables.InsuredPerson.id_type,
            tables.InsuredPerson.id_number_enc,
            tables.InsuredPerson.name_enc,
            tables.InsuredPerson.id_digest,
        )
        .where(tables.InsuredPerson.id == insured_id)
        .first()
    )
    if row is None:
        raise people.not_bound()
    digest = row["id_digest"]
    return (
        vault.decrypt(row["name_enc"], f"insured_person.name:{digest}"),
        row["id_type"],
        vault.decrypt(row["id_number_enc"], f"insured_person.id_number:{digest}"),
    )


async def insured_by_identity(vault: Vault, identity: EcertIdentity) -> int | None:
    """The insured person the platform named (by a face check, say), if we know them."""
    digest = vault.digest(people.identity_key(identity.id_type, identity.id_number))
    row = (
        await tables.InsuredPerson.select(tables.InsuredPerson.id)
        .where(tables.InsuredPerson.id_digest == digest)
        .first()
    )
    return None if row is None else int(row["id"])


async def spend_face_assertion(jti: str) -> None:
    """Inside the caller's transaction: a face assertion is used once, for a visit or a payment
    (409 `ECERT_FACE_REPLAYED` the second time)."""
    try:
        async with DB.transaction():  # a savepoint: the caller's transaction survives the refusal
            await tables.FaceAssertionUse.insert(tables.FaceAssertionUse(jti=jti, used_at=datetime.now(UTC)))
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("this face assertion was already used", code="ECERT_FACE_REPLAYED") from exc


def assertion_id(assertion: str) -> str:
    """A face assertion's id (its `jti`, read without checking it: for finding what it did)."""
    return visits.assertion_id(assertion)
