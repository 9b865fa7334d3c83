"""The medical-insurance e-certificate platform: identity and face verification, and newborns
enrolled in resident insurance on a guardian's word.

Every request is AES-256-GCM encrypted with the data key the platform issued us and signed with
HMAC-SHA256 under our app secret; every answer is signed the same way and checked before use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from datetime import date
from typing import Any, Literal

import httpx
import msgspec
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.partners.http import TransientPartnerError, rejected, signature_invalid, with_retries
from backend.platform.errors import AppError
from backend.settings import EcertSettings, PartnerHttpSettings

log = structlog.get_logger(__name__)


class FacePayment(msgspec.Struct, frozen=True):
    """What a face taken to pay consents to: this bill, this amount."""

    bill: str
    amount_fen: int
    by: str | None = None  # who pays how, as the kiosk showed it


class FaceCheck(msgspec.Struct, frozen=True):
    """What the platform read of a face assertion it accepted (signature, freshness, its own score
    floor and liveness, first use): for us to hold it to the kiosk and the payment."""

    jti: str
    score: float
    liveness: bool
    iat: int
    aud: str | None = None  # the kiosk that took it
    pay: FacePayment | None = None


class EcertIdentity(msgspec.Struct, frozen=True):
    cert_no: str
    name: str
    id_type: str
    id_number: str
    region_code: str
    insurance_type: Literal["employee", "resident"]
    personal_account_balance_fen: int
    status: str
    face: FaceCheck | None = None  # verify_face's answers only


class EcertRefusal(AppError):
    """The platform refused the person or the face: the caller's doing, not ours."""

    status_code = 422


# The platform's business codes: (HTTP status, our code, message, the field at fault).
REFUSALS: dict[str, tuple[int, str, str, str | None]] = {
    "E2001": (422, "ECERT_NOT_INSURED", "no insured person has this document", "id_number"),
    "E2002": (422, "ECERT_NAME_MISMATCH", "the name does not match the document", "name"),
    "E2004": (422, "ECERT_SUSPENDED", "this person's insurance is suspended", None),
    "E2101": (400, "ECERT_FACE_INVALID", "the face assertion is not valid", "face_assertion"),
    "E2102": (400, "ECERT_FACE_STALE", "the face assertion is too old", "face_assertion"),
    "E2103": (422, "ECERT_FACE_MISMATCH", "the face is not this person's", "face_assertion"),
    "E2104": (422, "ECERT_FACE_REJECTED", "the face check did not pass", "face_assertion"),
    "E2105": (409, "ECERT_FACE_REPLAYED", "this face assertion was already used", "face_assertion"),
    "E2201": (
        422,
        "ECERT_NEWBORN_OUT_OF_WINDOW",
        "the birth date is outside the newborn enrolment window",
        "birth_date",
    ),
    "E2202": (
        422,
        "ECERT_BIRTH_CERTIFICATE_INVALID",
        "the platform finds this birth-certificate number not valid",
        "birth_certificate_no",
    ),
    "E2203": (
        422,
        "ECERT_NEWBORN_MISMATCH",
        "this birth certificate is enrolled with another name or birth date",
        "birth_certificate_no",
    ),
    "E2204": (422, "ECERT_GUARDIAN_NOT_INSURED", "the platform does not know you as insured", None),
}
TRANSIENT_PREFIX = "E9"  # platform busy or failing inside
NONCE_REPLAYED = "E1007"
ANSWER_WINDOW_SECONDS = 300  # a retry of ours the platform saw twice: send it again, new nonce


class _Answer(msgspec.Struct):
    code: str
    message: str
    timestamp: int
    nonce: str
    encrypt_data: str
    sign: str


class EcertClient:
    partner = "ecert"

    def __init__(
        self, settings: EcertSettings, http_settings: PartnerHttpSettings, http: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.http_settings = http_settings
        self.http = http
        self._aead = AESGCM(base64.b64decode(settings.data_key))
        self._secret = settings.app_secret.encode()

    async def verify_identity(
        self, name: str, id_type: str, id_number: str, face_assertion: str | None = None
    ) -> EcertIdentity:
        data: dict[str, Any] = {"name": name, "id_type": id_type, "id_number": id_number}
        if face_assertion:
            data["face_assertion"] = face_assertion
        return await self._identity("verify_identity", data)

    async def verify_face(self, face_assertion: str) -> EcertIdentity:
        return await self._identity("verify_face", {"face_assertion": face_assertion})

    async def enrol_newborn(
        self, guardian_cert_no: str, birth_certificate_no: str, name: str, birth_date: date, region_code: str
    ) -> EcertIdentity:
        """Enrol a newborn in resident insurance in the guardian's region. The platform enrols a
        birth certificate once and answers the same person again, so a timed-out call is resent."""
        data = {
            "guardian_cert_no": guardian_cert_no,
            "birth_certificate_no": birth_certificate_no,
            "name": name,
            "birth_date": birth_date.isoformat(),
            "region_code": region_code,
        }
        return await self._identity("enrol_newborn", data)

    async def _identity(self, api: str, data: dict[str, Any]) -> EcertIdentity:
        # A face assertion is spent once the platform reads it: resend only what never arrived.
        answer = await with_retries(
            self.http_settings,
            self.partner,
            lambda: self._call(api, data),
            resend_after_timeout="face_assertion" not in data,
        )
        if answer.code in REFUSALS:
            status, code, message, field = REFUSALS[answer.code]
            detail = {"platform_code": answer.code, **({"field": field} if field else {})}
            raise EcertRefusal(message, code=code, status_code=status, detail=detail)
        if answer.code != "0":
            log.error("e-certificate platform refused our request", code=answer.code, api=api)
            raise rejected(
                self.partner, "the e-certificate platform refused the request", platform_code=answer.code
            )
        try:
            return msgspec.json.decode(self._open(answer.encrypt_data), type=EcertIdentity)
        except (msgspec.ValidationError, msgspec.DecodeError, InvalidTag, ValueError) as exc:
            raise self.bad_answer("its data could not be read") from exc

    async def _call(self, api: str, data: dict[str, Any]) -> _Answer:
        timestamp, nonce = int(time.time()), secrets.token_hex(16)
        sealed = self._seal(msgspec.json.encode(data))
        body = {
            "app_id": self.settings.app_id,
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_data": sealed,
            "sign": self._sign(
                f"app_id={self.settings.app_id}&encrypt_data={sealed}&nonce={nonce}&timestamp={timestamp}"
            ),
        }
        response = await self.http.post(f"{self.settings.api_base}/v1/{api}", json=body)
        if response.status_code >= 500:
            raise TransientPartnerError(self.partner, f"HTTP {response.status_code}")
        try:
            answer = msgspec.json.decode(response.content, type=_Answer)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise self.bad_answer(f"HTTP {response.status_code}, unreadable") from exc
        signed = (
            f"code={answer.code}&encrypt_data={answer.encrypt_data}&message={answer.message}"
            f"&nonce={answer.nonce}&timestamp={answer.timestamp}"
        )
        # The answer must be signed, fresh, and about this request (the nonce is echoed).
        if (
            not hmac.compare_digest(self._sign(signed).encode(), answer.sign.encode())
            or abs(time.time() - answer.timestamp) > ANSWER_WINDOW_SECONDS
            or answer.nonce != nonce
        ):
            raise signature_invalid(
                self.partner, "the e-certificate platform's answer failed signature verification"
            )
        if answer.code.startswith(TRANSIENT_PREFIX) or answer.code == NONCE_REPLAYED:
            raise TransientPartnerError(self.partner, answer.code)
        return answer

    def _sign(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def _seal(self, plaintext: bytes) -> str:
        iv = os.urandom(12)
        sealed = self._aead.encrypt(iv, plaintext, self.settings.app_id.encode())
        return base64.b64encode(iv + sealed).decode()

    def _open(self, sealed: str) -> bytes:
        raw = base64.b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], self.settings.app_id.encode())

    def bad_answer(self, reason: str) -> AppError:
        log.error("e-certificate platform answer unusable", reason=reason)
        return rejected(self.partner, "the e-certificate platform's answer could not be used", reason=reason)
