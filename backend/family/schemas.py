"""What goes over the wire for family links: invitations, relatives added by proxy, grants."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from backend.ecert.documents import IdType
from backend.ecert.schemas import Assertion, DocumentNumber, MaskedIdentity, Name
from backend.platform.schemas import PRINTED, Wire

RelationName = Literal["SPOUSE", "PARENT", "CHILD", "SIBLING", "GRANDPARENT", "GRANDCHILD"]


class InvitationCreate(Wire):
    relation: RelationName  # what the one invited is to you


class InvitationRead(Wire, omit_defaults=False):
    id: uuid.UUID
    relation: str
    code: str  # shown once: the relative types it, or scans `qr_svg`
    accept_url: str
    qr_svg: str
    expires_at: datetime


class InvitationAccept(Wire):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=PRINTED)]  # as typed
    relation: RelationName  # what the one who invited is to you


class RelativeCreate(Wire):
    """A relative without a phone (an elder, a child), verified by the e-certificate platform."""

    relation: RelationName
    name: Name
    id_number: DocumentNumber
    id_type: IdType = "resident_id"
    # The relative's face, scanned on the holder's phone: needed unless they are a child (under 16).
    face_assertion: Assertion | None = None


class NewbornCreate(Wire):
    """A newborn, enrolled in resident insurance by the e-certificate platform on the parent's word."""

    # 出生医学证明编号
    birth_certificate_no: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=PRINTED)]
    name: Name
    birth_date: date


class GrantsUpdate(Wire):
    """Each grant is given by the one whose data or money it concerns: `manage` by the relative,
    `pay`, `credit_cap_fen` and `kiosk` by the holder. Fields left out stay as they are."""

    manage: bool | msgspec.UnsetType = msgspec.UNSET
    pay: bool | msgspec.UnsetType = msgspec.UNSET
    credit_cap_fen: Annotated[int, msgspec.Meta(ge=1, le=10**9)] | msgspec.UnsetType | None = msgspec.UNSET
    # `pay` and `credit` also at the hospital's kiosks, by the relative's face, without the holder there.
    kiosk: bool | msgspec.UnsetType = msgspec.UNSET


class GrantsRead(Wire, omit_defaults=False):
    manage: bool
    pay: bool
    credit_cap_fen: int | None
    kiosk: bool


class LinkRead(Wire, omit_defaults=False):
    id: int
    side: Literal["holder", "relative"]  # which side of the link you are
    relation: str  # what the other is to you
    other: MaskedIdentity  # the other person, masked
    linked_by: str
    state: str
    grants: GrantsRead
    created_at: datetime
    ended_at: datetime | None


class FamilyRead(Wire, omit_defaults=False):
    relatives: list[LinkRead]  # the people you look after
    holders: list[LinkRead]  # the people who look after you
