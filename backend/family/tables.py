"""Links between a holder and a relative, the invitations that make them, and their states. A
link runs one way: the holder looks after (and may pay for) the relative."""

from enum import StrEnum

from piccolo.columns import UUID, BigInt, Boolean, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.constraints import Check
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
    verified by the e-certificate platform and looked after by the holder."""

    INVITATION = "INVITATION"
    PROXY = "PROXY"


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
