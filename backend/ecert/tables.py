"""Insured people, their bindings to users, QR codes, visits, and the decode record."""

from piccolo.columns import UUID, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.constraints import Check
from piccolo.table import Table

from backend.auth.tables import User
from backend.hospitals.tables import Institution


class InsuredPerson(Table, tablename="insured_person"):
    """A person the e-certificate platform vouched for. Name and ID are kept encrypted; the
    digest finds a person by document without decrypting anyone."""

    id = Serial(primary_key=True)
    id_digest = Varchar(length=64, unique=True)  # keyed digest of "id_type:id_number"
    id_type = Varchar(length=32)
    id_number_enc = Varchar(length=200)
    name_enc = Varchar(length=300)
    id_number_masked = Varchar(length=32)
    name_masked = Varchar(length=64)
    cert_no = Varchar(length=32, unique=True)
    region_code = Varchar(length=6)
    insurance_type = Varchar(length=16)  # employee | resident
    opening_balance_fen = Integer()  # the personal account as the platform reported it at binding
    created_at = Timestamptz()
    updated_at = Timestamptz()

    known_insurance_type = Check("insurance_type IN ('employee', 'resident')")


class EcertBinding(Table, tablename="ecert_binding"):
    """A user's binding of an insured person; unbinding keeps the row (history)."""

    id = Serial(primary_key=True)
    user_id = ForeignKey(User, null=False, index=True)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    channel = Varchar(length=16)
    bound_at = Timestamptz()
    unbound_at = Timestamptz(null=True, default=None)
    # Partial unique indexes (one live binding per user; per identity and channel) are in the
    # migration: Piccolo has no syntax for them.


class QrCode(Table, tablename="ecert_qr_code"):
    """A code naming an insured person, issued to their own account (under its binding) or to a
    holder who manages them (under a family link); it works only while that is still live."""

    id = UUID(primary_key=True)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    binding_id = ForeignKey(EcertBinding, null=True, default=None, index=True)
    # The family link's id: a plain integer, as the family app depends on this one.
    link_id = Integer(null=True, default=None)
    issued_by_user_id = ForeignKey(User, null=False)
    issued_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    superseded_at = Timestamptz(null=True, default=None)

    issued_under_one = Check("(binding_id IS NULL) <> (link_id IS NULL)")


class Visit(Table, tablename="visit"):
    """A patient's presence at one institution, opened by a QR decode or a face check."""

    id = Serial(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    institution_id = ForeignKey(Institution, null=False)
    opened_by = Varchar(length=64)  # partner client id
    method = Varchar(length=8)  # qr | face
    created_at = Timestamptz()
    expires_at = Timestamptz()


class EcertDecode(Table, tablename="ecert_decode"):
    """Every identification attempt at a hospital, for fund supervision: who, where, by which
    terminal, and how it ended (refused attempts too: forgeries and replays are what to look for)."""

    id = Serial(primary_key=True)
    insured_id = ForeignKey(InsuredPerson, null=True, default=None, index=True)
    institution_id = ForeignKey(Institution, null=False, index=True)
    client_id = Varchar(length=64)
    method = Varchar(length=8)
    outcome = Varchar(length=40)  # "visit_opened" or the error code
    visit_id = ForeignKey(Visit, null=True, default=None)
    correlation_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz(index=True)


class FaceAssertionUse(Table, tablename="face_assertion_use"):
    """Face assertions already accepted: each opens at most one visit."""

    id = Serial(primary_key=True)
    jti = Varchar(length=64, unique=True)
    used_at = Timestamptz()
