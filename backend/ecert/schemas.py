"""E-certificate binding, QR codes and visits, on the wire. Personal data leaves only masked."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.ecert.documents import IdType
from backend.platform.schemas import IDENTIFIER, PRINTED, TEXT, Wire

# No surrounding blanks, no control or invisible characters: what the platform compares is what
# was typed, and what a screen shows is all there is.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=TEXT)]
# Full-width digits and letters are made ASCII before the document is checked (`documents.normalize`);
# anything hidden is refused here, so one document has one spelling.
DocumentNumber = Annotated[str, msgspec.Meta(min_length=6, max_length=32, pattern=PRINTED)]
Assertion = Annotated[str, msgspec.Meta(min_length=20, max_length=4096, pattern=IDENTIFIER)]
VisitToken = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=IDENTIFIER)]


class BindRequest(Wire):
    name: Name
    id_type: IdType
    id_number: DocumentNumber
    face_assertion: Assertion | msgspec.UnsetType = msgspec.UNSET


class MaskedIdentity(Wire):
    name: str  # masked: 张*丰
    id_type: str
    id_number: str  # masked: 330***********1234
    insurance_type: Literal["employee", "resident"]
    region_code: str


class EcertRead(Wire):
    cert_no: str
    identity: MaskedIdentity
    channel: str
    bound_at: datetime


class QrCodeRead(Wire):
    payload: str
    expires_at: datetime
    refresh_in: int  # seconds until the mini-program should fetch the next code


class DecodeRequest(Wire):
    qr: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=PRINTED)]


class FaceRequest(Wire):
    face_assertion: Assertion


class VisitOpened(Wire):
    visit_token: str
    expires_at: datetime
    method: Literal["qr", "face"]
    institution: str
    patient: MaskedIdentity


class VisitLookup(Wire):
    visit_token: VisitToken


class VisitRead(Wire):
    expires_at: datetime
    method: str
    institution: str
    patient: MaskedIdentity
