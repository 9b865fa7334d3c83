"""Partner clients."""

from piccolo.columns import Array, Boolean, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.table import Table

from backend.hospitals.tables import Institution


class PartnerClient(Table, tablename="partner_client"):
    id = Serial(primary_key=True)
    client_id = Varchar(length=64, unique=True)
    secret_hash = Varchar(length=64)  # SHA-256 of a 256-bit random secret
    kind = Varchar(length=16)  # hospital | terminal | bank
    name = Varchar(length=200)
    scopes = Array(base_column=Varchar(length=64))
    institution = ForeignKey(Institution, null=True, default=None)
    active = Boolean(default=True)
    created_at = Timestamptz()
