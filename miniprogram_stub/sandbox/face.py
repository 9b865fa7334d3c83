"""Face-verification provider: a kiosk scans a face and gets a signed assertion (ES256 compact JWS).

The assertion names the person only by `idd`, a digest of the identity document, so it
carries no personal data in clear; a relying party checks it with `verify_assertion`.
"""

import hashlib
import hmac
import secrets
import time
from typing import Annotated, Literal

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from litestar import Router, post

from miniprogram_stub.sandbox import config
from miniprogram_stub.sandbox.faults import Partner

NAME = "face"
ISSUER = "sandbox-face"
TYP = "face+jwt"
ALG = "ES256"

IdType = Literal[
    "resident_id",
    "foreign_permanent_residence",
    "hk_macau_tw_residence",
    "hk_macau_permit",
    "taiwan_permit",
]


class Scan(msgspec.Struct, forbid_unknown_fields=True):
    id_type: IdType
    id_number: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    score: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.97
    liveness: bool = True
    issued_at: int | None = None  # unix seconds; tests back-date it to make stale assertions
    # A kiosk's scan names the kiosk (its client id); one taken to pay names the bill and the
    # amount the kiosk's screen showed, so the assertion is good for that payment alone.
    kiosk: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    bill_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    amount_fen: Annotated[int, msgspec.Meta(ge=0)] | None = None
    paid_by: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # who pays how, as shown


class Payment(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a face taken to pay consents to: this bill, this amount, paid by whom how."""

    bill: str
    amount_fen: int
    by: str | None = None


class ScanResult(msgspec.Struct):
    assertion: str


class FaceClaims(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    iss: Literal["sandbox-face"]
    idd: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    score: float
    liveness: bool
    iat: int
    jti: Annotated[str, msgspec.Meta(min_length=16, max_length=64)]
    aud: str | None = None  # the kiosk that took it
    pay: Payment | None = None


class InvalidAssertionError(Exception):
    """Not a compact JWS signed by this provider, or its claims are ill-formed."""


def identity_digest(id_type: str, id_number: str) -> str:
    """The `idd` claim: sha256 hex of "id_type:id_number" (a check char `x` counts as `X`)."""
    # Keyed: ID numbers have little entropy, so a plain hash could be reversed by trying them all.
    message = f"{id_type}:{id_number.upper()}".encode()
    return hmac.new(config.PLATFORM_SECRET, message, hashlib.sha256).hexdigest()


def _kid() -> str:
    return config.face_provider_public_key().thumbprint()


def sign_assertion(claims: FaceClaims) -> str:
    header = {"alg": ALG, "typ": TYP, "kid": _kid()}
    payload = msgspec.json.encode(claims)
    return jws.serialize_compact(header, payload, config.face_provider_private_key(), algorithms=[ALG])


def verify_assertion(token: str) -> FaceClaims:
    """The signature and the claims' shape; freshness, score and replay are the relying party's call."""
    try:
        signed = jws.deserialize_compact(token, config.face_provider_public_key(), algorithms=[ALG])
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidAssertionError(str(exc)) from None
    header = signed.protected
    if header.get("typ") != TYP or header.get("kid") != _kid():
        raise InvalidAssertionError("unexpected typ or kid")
    try:
        return msgspec.json.decode(signed.payload, type=FaceClaims)
    except msgspec.DecodeError as exc:
        raise InvalidAssertionError(str(exc)) from None


@post("/_sandbox/scan", status_code=200, operation_id="faceDeviceScan")
async def scan(data: Scan) -> ScanResult:
    claims = FaceClaims(
        iss=ISSUER,
        idd=identity_digest(data.id_type, data.id_number),
        score=data.score,
        liveness=data.liveness,
        iat=int(time.time()) if data.issued_at is None else data.issued_at,
        jti=secrets.token_hex(16),
        aud=data.kiosk,
        pay=None if data.bill_id is None else Payment(data.bill_id, data.amount_fen or 0, data.paid_by),
    )
    return ScanResult(sign_assertion(claims))


router = Router("/face", route_handlers=[scan])

# The device side is not an API a relying party calls, so there is nothing to fault here.
PARTNER = Partner(NAME, frozenset(), frozenset(), router, lambda: None)
