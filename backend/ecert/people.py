"""How an insured person is named and shown: the lookup key of a document, the masked identity."""

from __future__ import annotations

from typing import Any

from backend.ecert import documents, tables
from backend.ecert.schemas import MaskedIdentity
from backend.platform.errors import NotFound


def not_bound() -> NotFound:
    return NotFound("no e-certificate is bound to this account", code="ECERT_NOT_BOUND")


MASKED_COLUMNS = (
    tables.InsuredPerson.name_masked,
    tables.InsuredPerson.id_type,
    tables.InsuredPerson.id_number_masked,
    tables.InsuredPerson.insurance_type,
    tables.InsuredPerson.region_code,
)


def masked(person: dict[str, Any]) -> MaskedIdentity:
    return MaskedIdentity(
        name=person["name_masked"],
        id_type=person["id_type"],
        id_number=person["id_number_masked"],
        insurance_type=person["insurance_type"],
        region_code=person["region_code"],
    )


def identity_key(id_type: str, id_number: str) -> str:
    return f"{id_type}:{documents.normalize(id_number)}"
