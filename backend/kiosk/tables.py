"""Every payment taken by a patient's face at a kiosk, for fund supervision: which kiosk, where,
how sure the face was, which assertion, which bill and how much."""

from piccolo.columns import (
    BigInt,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from backend.billing.tables import Bill
from backend.ecert.tables import InsuredPerson
from backend.hospitals.tables import Institution


class FacePayment(Table, tablename="face_payment"):
    id = Serial(primary_key=True)
    bill_id = ForeignKey(Bill, null=False, unique=True)  # one face payment per bill
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    institution_id = ForeignKey(Institution, null=False, index=True)
    kiosk_client_id = Varchar(length=64, index=True)
    assertion_id = Varchar(length=64, unique=True)  # the face assertion's jti
    score = DoublePrecision()
    liveness = Boolean()
    taken_at = Timestamptz()  # when the face was scanned (the assertion's iat)
    amount_fen = BigInt()  # what the face consented to: the bill less the fund's part
    charged_fen = BigInt()  # what the face itself took (the counter's cash is paid at the counter)
    consent = Varchar(length=64)  # who pays how, as the face was taken for: `patient/counter`, ...
    cash_source = Varchar(length=16)  # credit | counter | none
    payer_user_id = Integer()  # the patient's account, or the relative's whose money paid
    family_link_id = Integer(null=True, default=None)  # when a relative's grant paid
    created_at = Timestamptz(index=True)
