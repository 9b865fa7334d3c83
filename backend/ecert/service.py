"""The e-certificate's face for other domains: who a bill is for, who may see it, how to show them."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Literal

import msgspec

from backend.ecert import binding, documents, people, tables
from backend.ecert.schemas import MaskedIdentity
from backend.ecert.tables import EcertBinding, Visit
from backend.hospitals import service as hospitals
from backend.oauth.service import Partner
from backend.partners.ecert import EcertIdentity
from backend.platform.errors import AppError, Forbidden, NotFound
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
