"""Links between a holder and a relative, the invitations that make them, and their states. A
link runs one way: the holder looks after (and may pay for) the relative."""

from enum import StrEnum

from piccolo.columns import UUID, BigInt, Boolean, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.constraints import Check, Unique
from piccolo.table import Table

from backend.billing.tables import one_of
from backend.ecert.tables import InsuredPerson


class Relation(StrEnum):
    """What the relative is to the holder."""

    SPOUSE = "SPOUSE"
    PARENT = "PARENT"
    CHILD = "CHILD"
    SIBLING = "SIBLING"
    GRANDPARENT = "GRANDPARENT"
    GRANDCHILD = "GRANDCHILD"


class LinkedBy(StrEnum):
    """INVITATION: the relative accepted from their own account. PROXY: a relative without a phone,
    verified by the e-certificate platform and looked after by the holder. NEWBORN: a baby the
    platform enrolled in resident insurance at the parent's request, in the parent's care."""

    INVITATION = "INVITATION"
    PROXY = "PROXY"
    NEWBORN = "NEWBORN"


class LinkState(StrEnum):
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


class FamilyLink(Table, tablename="family_link"):
    id = Serial(primary_key=True)
    holder_id = ForeignKey(InsuredPerson, null=False, index=True)
    holder_user_id = Integer()
    relative_id = ForeignKey(InsuredPerson, null=False, index=True)
    relation = Varchar(length=16)  # a Relation: the relative's to the holder
    linked_by = Varchar(length=16)
    state = Varchar(length=8)
    # Grants, each given by the one whose data or money it concerns: `manage` by the relative (a
    # proxy relative's holder is their guardian), `pay` and `credit` by the holder.
    grant_manage = Boolean(default=False)
    grant_pay = Boolean(default=False)
    credit_cap_fen = BigInt(null=True, default=None)  # the `credit` grant: a monthly cap; None: none
    grant_kiosk = Boolean(default=False)  # `pay` and `credit` also by the relative's face at a kiosk
    # One more on every change of grants or state, made with the link locked: what a payment made
    # under the link records, so what it was made under is known without comparing clocks.
    version = Integer(default=1)
    created_at = Timestamptz()
    ended_at = Timestamptz(null=True, default=None)
    ended_by_user_id = Integer(null=True, default=None)

    known_relation = one_of("relation", Relation)
    known_linked_by = one_of("linked_by", LinkedBy)
    known_state = one_of("state", LinkState)
    not_oneself = Check("holder_id <> relative_id AND (credit_cap_fen IS NULL OR credit_cap_fen > 0)")
    # In the migration: one ACTIVE link per (holder, relative).


class FamilyInvitation(Table, tablename="family_invitation"):
    id = UUID(primary_key=True)
    code_hash = Varchar(length=64, unique=True)
    holder_id = ForeignKey(InsuredPerson, null=False)
    holder_user_id = Integer()
    relation = Varchar(length=16)  # what the one invited is to the holder
    created_at = Timestamptz()
    expires_at = Timestamptz()
    accepted_at = Timestamptz(null=True, default=None)
    link_id = Integer(null=True, default=None)

    known_relation = one_of("relation", Relation)


class FamilyGrantChange(Table, tablename="family_grant_change"):
    """A link's grants and state at each of its versions: one row when the link is made and one
    per change (grants, or its end), so what a payment made under a version was allowed is known
    (the audit asks it of every mutual-aid payment and shared-credit drawdown)."""

    id = Serial(primary_key=True)
    link_id = ForeignKey(FamilyLink, null=False, index=True)
    version = Integer()
    ended = Boolean(default=False)
    grant_manage = Boolean()
    grant_pay = Boolean()
    credit_cap_fen = BigInt(null=True, default=None)
    grant_kiosk = Boolean(default=False)
    changed_at = Timestamptz()
    changed_by_user_id = Integer()

    one_row_per_version = Unique([link_id, version])
