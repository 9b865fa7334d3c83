"""A newborn enrolled in resident insurance by the e-certificate platform, on a guardian's word:
the guardian's own e-certificate vouches, the birth certificate names the baby."""

from __future__ import annotations

from datetime import date

from backend.ecert import binding, documents, people, tables
from backend.partners.ecert import EcertIdentity
from backend.platform.runtime import Runtime


async def enrol(
    rt: Runtime, user_id: int, guardian_id: int, birth_certificate_no: str, name: str, birth_date: date
) -> EcertIdentity:
    """The platform enrols the baby (or answers the baby it enrolled before) in the guardian's
    region; its refusals count against the user's attempts as a bind's do. Nothing is written."""
    guardian = (
        await tables.InsuredPerson.select(tables.InsuredPerson.cert_no, tables.InsuredPerson.region_code)
        .where(tables.InsuredPerson.id == guardian_id)
        .first()
    )
    assert guardian is not None, "the guardian is an insured person of ours"
    async with binding.bind_attempt(rt, user_id):
        identity = await rt.partners.ecert.enrol_newborn(
            guardian["cert_no"], birth_certificate_no, name, birth_date, guardian["region_code"]
        )
    if (identity.id_type, documents.normalize(identity.id_number)) != (
        documents.BIRTH_CERTIFICATE,
        birth_certificate_no,
    ) or identity.insurance_type != "resident":
        raise rt.partners.ecert.bad_answer("it vouched for another newborn than the one asked")
    return identity


async def known(rt: Runtime, birth_certificate_no: str) -> int | None:
    """The insured person enrolled with this birth certificate, if we have met them."""
    digest = rt.vault.digest(people.identity_key(documents.BIRTH_CERTIFICATE, birth_certificate_no))
    row = (
        await tables.InsuredPerson.select(tables.InsuredPerson.id)
        .where(tables.InsuredPerson.id_digest == digest)
        .first()
    )
    return None if row is None else int(row["id"])
