"""Linking relatives to a holder: by an invitation the relative accepts from their own account,
or by proxy for a relative without a phone; ending a link; the grants each side gives."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import structlog

from backend.auth.service import Patient
from backend.billing import service as billing
from backend.ecert import service as ecert
from backend.ecert.qr import render
from backend.family import relations
from backend.family.schemas import (
    FamilyRead,
    GrantsRead,
    GrantsUpdate,
    InvitationAccept,
    InvitationCreate,
    InvitationRead,
    LinkRead,
    RelativeCreate,
)
from backend.family.tables import (
    FamilyGrantChange,
    FamilyInvitation,
    FamilyLink,
    LinkedBy,
    LinkState,
    Relation,
)
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, Conflict, Forbidden, NotFound
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")


async def _own(patient: Patient) -> ecert.InsuredPerson:
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        raise NotFound("bind your e-certificate first", code="ECERT_NOT_BOUND")
    return await ecert.insured_person(insured[0])


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def invite(rt: Runtime, patient: Patient, request: InvitationCreate) -> InvitationRead:
    """A one-time code (and its QR code) the relative accepts from their own account."""
    holder = await _own(patient)
    relation = relations.check(
        request.relation, billing.pooling_region(holder.region_code), rt.settings.family.extended_regions
    )
    code = base64.b32encode(secrets.token_bytes(10)).decode()  # 16 characters, 80 bits
    invitation_id, now = uuid.uuid4(), datetime.now(UTC)
    expires_at = now + timedelta(hours=rt.settings.family.invitation_hours)
    await FamilyInvitation.insert(
        FamilyInvitation(
            id=invitation_id,
            code_hash=_hash(code),
            holder_id=holder.id,
            holder_user_id=patient.user_id,
            relation=relation,
            created_at=now,
            expires_at=expires_at,
        )
    )
    accept_url = f"{rt.settings.app.base_url}/mp/family/accept?code={code}"
    return InvitationRead(
        id=invitation_id,
        relation=relation,
        code=code,
        accept_url=accept_url,
        qr_svg=render(accept_url, "svg").decode(),
        expires_at=expires_at,
    )


async def accept(rt: Runtime, patient: Patient, request: InvitationAccept) -> LinkRead:
    """The relative accepts, saying what the one who invited is to them: the two must agree."""
    relative = await _own(patient)
    row = await FamilyInvitation.select().where(FamilyInvitation.code_hash == _hash(request.code)).first()
    if row is None or row["expires_at"] <= datetime.now(UTC):
        raise NotFound(
            "no such invitation, or it has expired", code="INVITATION_NOT_FOUND", detail={"field": "code"}
        )
    if row["holder_id"] not in await ecert.insured_of_user(row["holder_user_id"]):
        # Whoever invited has unbound the e-certificate they invited as: the invitation lapsed.
        raise NotFound(
            "no such invitation, or it has expired", code="INVITATION_NOT_FOUND", detail={"field": "code"}
        )
    if row["holder_id"] == relative.id:
        raise Conflict("this is your own invitation", code="FAMILY_SELF")
    if relations.BACK[Relation(row["relation"])] != request.relation:
        raise Conflict(
            "the relation you state does not match the invitation's",
            code="RELATION_MISMATCH",
            detail={"field": "relation", "expected": relations.BACK[Relation(row["relation"])]},
        )
    async with DB.transaction():
        taken = await FamilyInvitation.raw(
            "UPDATE family_invitation SET accepted_at = now() WHERE id = {} AND accepted_at IS NULL "
            "AND expires_at > now() RETURNING id",
            row["id"],
        )
        if not taken:
            raise Conflict("this invitation has been used", code="INVITATION_USED", detail={"field": "code"})
        link_id = await _link(
            rt,
            row["holder_id"],
            row["holder_user_id"],
            relative.id,
            row["relation"],
            LinkedBy.INVITATION,
            by_user_id=patient.user_id,
        )
        await FamilyInvitation.update({FamilyInvitation.link_id: link_id}).where(
            FamilyInvitation.id == row["id"]
        )
    log.info("relative linked", link_id=link_id, linked_by="invitation")
    return await _read(link_id, patient)


CHILD_AGE = 16  # below it a child is added by a parent without their face


def _age(id_type: str, id_number: str, today: date) -> int | None:
    """Age from a document that carries the birth date (digits 7 to 14), else None."""
    if id_type not in ("resident_id", "hk_macau_tw_residence"):
        return None
    try:
        born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


async def _proxy_budget(rt: Runtime, user_id: int) -> None:
    """Every proxy verification counts, granted or refused, so the platform is no free oracle of
    whose name and document match: at most `MEDPAY_FAMILY_PROXY_CHECKS_PER_DAY` a day (China)."""
    today = datetime.now(UTC).astimezone(CHINA)
    key = f"family:proxy-checks:{user_id}:{today:%Y%m%d}"
    # One transaction, so no count is left without its expiry by an EXPIRE failing after the INCR;
    # set again by each check, it ends two days after the day's last.
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 2 * 86400)
        count, _ = await pipe.execute()
    if count > rt.settings.family.proxy_checks_per_day:
        midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), tzinfo=CHINA)
        raise AppError(
            "too many relatives checked today; try again tomorrow",
            code="FAMILY_PROXY_LIMITED",
            status_code=429,
            headers={"Retry-After": str(int((midnight - today).total_seconds()) + 1)},
        )


async def add_relative(rt: Runtime, patient: Patient, request: RelativeCreate) -> LinkRead:
    """A relative without a phone, verified by the e-certificate platform (by their face, unless a
    young child), looked after by the holder. Nothing is written unless they are linked."""
    holder = await _own(patient)
    relation = relations.check(
        request.relation, billing.pooling_region(holder.region_code), rt.settings.family.extended_regions
    )
    number = ecert.checked_document(request.id_type, request.id_number)
    age = _age(request.id_type, number, datetime.now(UTC).astimezone(CHINA).date())
    young_child = relation in (Relation.CHILD, Relation.GRANDCHILD) and age is not None and age < CHILD_AGE
    if request.face_assertion is None and not young_child:
        raise AppError(
            f"scan your relative's face: only a child under {CHILD_AGE} is added without it",
            code="FACE_REQUIRED",
            status_code=422,
            detail={"field": "face_assertion"},
        )
    await _check_room(rt, holder.id)  # before the platform is asked; again under the lock
    await _proxy_budget(rt, patient.user_id)
    identity = await ecert.verify_person(
        rt, patient.user_id, request.name, request.id_type, request.id_number, request.face_assertion
    )
    async with DB.transaction():
        relative_id = await ecert.remember(rt, identity)
        if relative_id == holder.id:
            raise Conflict("this is your own e-certificate", code="FAMILY_SELF")
        if await ecert.users_of_insured(relative_id):
            raise Conflict(
                "this relative has an account of their own: invite them instead",
                code="RELATIVE_HAS_ACCOUNT",
                detail={"field": "id_number"},
            )
        link_id = await _link(rt, holder.id, patient.user_id, relative_id, relation, LinkedBy.PROXY)
    log.info("relative linked", link_id=link_id, linked_by="proxy")
    return await _read(link_id, patient)


async def _check_room(rt: Runtime, holder_id: int) -> None:
    count = await FamilyLink.count().where(
        (FamilyLink.holder_id == holder_id) & (FamilyLink.state == LinkState.ACTIVE)
    )
    most = rt.settings.family.max_relatives
    if count >= most:
        raise Conflict(f"at most {most} relatives may be linked", code="FAMILY_FULL", detail={"max": most})


async def _link(
    rt: Runtime,
    holder_id: int,
    holder_user_id: int,
    relative_id: int,
    relation: str,
    linked_by: LinkedBy,
    by_user_id: int | None = None,
) -> int:
    """A new ACTIVE link, within the holder's number of relatives (counted under a lock on the
    holder, so concurrent links cannot pass it)."""
    await FamilyLink.raw("SELECT pg_advisory_xact_lock(hashtext('family-holder'), {})", holder_id)
    await _check_room(rt, holder_id)
    now = datetime.now(UTC)
    # A relative without a phone is in the holder's care: their data is the holder's to see.
    manage = linked_by in (LinkedBy.PROXY, LinkedBy.NEWBORN)
    try:
        rows = await FamilyLink.insert(
            FamilyLink(
                holder_id=holder_id,
                holder_user_id=holder_user_id,
                relative_id=relative_id,
                relation=relation,
                linked_by=linked_by,
                state=LinkState.ACTIVE,
                grant_manage=manage,
                created_at=now,
            )
        ).returning(FamilyLink.id)
    except asyncpg.UniqueViolationError:
        raise Conflict("this relative is linked already", code="FAMILY_LINK_EXISTS") from None
    link_id = int(rows[0]["id"])
    await _record(link_id, 1, manage, False, None, by_user_id or holder_user_id)
    return link_id


async def _record(
    link_id: int,
    version: int,
    manage: bool,
    pay: bool,
    credit_cap_fen: int | None,
    by_user_id: int,
    *,
    ended: bool = False,
    kiosk: bool = False,
) -> None:
    """The link's grants and state at this version, kept for the audit."""
    await FamilyGrantChange.insert(
        FamilyGrantChange(
            link_id=link_id,
            version=version,
            ended=ended,
            grant_manage=manage,
            grant_pay=pay,
            credit_cap_fen=credit_cap_fen,
            grant_kiosk=kiosk,
            changed_at=datetime.now(UTC),
            changed_by_user_id=by_user_id,
        )
    )


async def _locked(link_id: int) -> dict[str, Any]:
    """The link, locked until the transaction ends: after any payment made under it (which holds
    it, `service.acting_for`), so a change is a later version than that payment's and is seen by
    the next."""
    rows = await FamilyLink.raw("SELECT * FROM family_link WHERE id = {} FOR NO KEY UPDATE", link_id)
    return dict(rows[0])


async def _mine(patient: Patient, link_id: int) -> dict[str, Any]:
    """The link, if the patient is on either side of it; 404 otherwise."""
    row = await FamilyLink.select().where(FamilyLink.id == link_id).first()
    if row is None:
        raise NotFound("no such link", code="FAMILY_LINK_NOT_FOUND")
    insured = await ecert.insured_of_user(patient.user_id)
    if row["holder_id"] not in insured and row["relative_id"] not in insured:
        raise NotFound("no such link", code="FAMILY_LINK_NOT_FOUND")
    return dict(row)


async def end(patient: Patient, link_id: int) -> LinkRead:
    """Either side ends the link: nothing new is done under it from now on."""
    await _mine(patient, link_id)
    async with DB.transaction():
        if (link := await _locked(link_id))["state"] == LinkState.ACTIVE:
            await FamilyLink.update(
                {
                    FamilyLink.state: LinkState.ENDED,
                    FamilyLink.ended_at: datetime.now(UTC),
                    FamilyLink.ended_by_user_id: patient.user_id,
                    FamilyLink.version: link["version"] + 1,
                }
            ).where(FamilyLink.id == link_id)
            await _record(
                link_id,
                link["version"] + 1,
                link["grant_manage"],
                link["grant_pay"],
                link["credit_cap_fen"],
                patient.user_id,
                ended=True,
                kiosk=link["grant_kiosk"],
            )
            log.info("family link ended", link_id=link_id, by=patient.user_id)
    return await _read(link_id, patient)


async def update_grants(patient: Patient, link_id: int, request: GrantsUpdate) -> LinkRead:
    """Set the grants this side may give; another side's grant is 403 `GRANT_NOT_YOURS`."""
    link = await _mine(patient, link_id)
    if link["state"] != LinkState.ACTIVE:
        raise Conflict("the link has ended", code="FAMILY_LINK_ENDED")
    holder = link["holder_id"] in await ecert.insured_of_user(patient.user_id)
    changes: dict[Any, Any] = {}
    if request.manage is not msgspec.UNSET:
        # The relative's to give or take back, always: a relative added by proxy who binds an
        # account of their own decides from then on.
        if holder:
            raise Forbidden(
                "`manage` is given by the relative, whose data it opens",
                code="GRANT_NOT_YOURS",
                detail={"field": "manage"},
            )
        changes[FamilyLink.grant_manage] = request.manage
    holders = (
        ("pay", FamilyLink.grant_pay),
        ("credit_cap_fen", FamilyLink.credit_cap_fen),
        ("kiosk", FamilyLink.grant_kiosk),
    )
    for field, column in holders:
        value = getattr(request, field)
        if value is msgspec.UNSET:
            continue
        if not holder:
            raise Forbidden(
                f"`{field}` is given by the holder, whose money it spends",
                code="GRANT_NOT_YOURS",
                detail={"field": field},
            )
        changes[column] = value
    if request.pay is True and (await ecert.insured_person(link["holder_id"])).insurance_type != "employee":
        raise AppError(
            "only an employee's personal account pays for relatives (家庭共济)",
            code="FAMILY_PAY_EMPLOYEE_ONLY",
            status_code=422,
            detail={"field": "pay"},
        )
    if changes:
        async with DB.transaction():
            current = await _locked(link_id)
            if current["state"] != LinkState.ACTIVE:
                raise Conflict("the link has ended", code="FAMILY_LINK_ENDED")
            version = current["version"] + 1
            await FamilyLink.update({**changes, FamilyLink.version: version}).where(FamilyLink.id == link_id)
            grants = {column._meta.name: value for column, value in changes.items()}
            await _record(
                link_id,
                version,
                grants.get("grant_manage", current["grant_manage"]),
                grants.get("grant_pay", current["grant_pay"]),
                grants.get("credit_cap_fen", current["credit_cap_fen"]),
                patient.user_id,
                kiosk=grants.get("grant_kiosk", current["grant_kiosk"]),
            )
    return await _read(link_id, patient)


def _as_read(row: dict[str, Any], side: str, other: ecert.InsuredPerson) -> LinkRead:
    relation = Relation(row["relation"])
    return LinkRead(
        id=row["id"],
        side=side,  # type: ignore[arg-type]
        relation=relation if side == "holder" else relations.BACK[relation],
        other=other.masked,
        linked_by=row["linked_by"],
        state=row["state"],
        grants=GrantsRead(
            manage=row["grant_manage"],
            pay=row["grant_pay"],
            credit_cap_fen=row["credit_cap_fen"],
            kiosk=row["grant_kiosk"],
        ),
        created_at=row["created_at"],
        ended_at=row["ended_at"],
    )


async def _read(link_id: int, patient: Patient) -> LinkRead:
    row = await FamilyLink.select().where(FamilyLink.id == link_id).first()
    assert row is not None
    if row["holder_id"] in await ecert.insured_of_user(patient.user_id):
        return _as_read(row, "holder", await ecert.insured_person(row["relative_id"]))
    return _as_read(row, "relative", await ecert.insured_person(row["holder_id"]))


async def family_of(patient: Patient) -> FamilyRead:
    insured = await ecert.insured_of_user(patient.user_id)
    if not insured:
        return FamilyRead(relatives=[], holders=[])
    relatives = await FamilyLink.select().where(FamilyLink.holder_id.is_in(insured)).order_by(FamilyLink.id)
    holders = await FamilyLink.select().where(FamilyLink.relative_id.is_in(insured)).order_by(FamilyLink.id)
    return FamilyRead(
        relatives=[_as_read(r, "holder", await ecert.insured_person(r["relative_id"])) for r in relatives],
        holders=[_as_read(r, "relative", await ecert.insured_person(r["holder_id"])) for r in holders],
    )
