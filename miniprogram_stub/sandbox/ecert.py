"""Medical-insurance e-certificate platform: verify a person by name + ID number, or by face;
enrol a newborn in resident insurance on a guardian's word.

`POST /ecert/v1/{api}` with a signed, encrypted envelope (see `ecert_protocol`); who is
insured, including the `测试` rule for generated people, is in `insured`.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.di import Provide

from miniprogram_stub.sandbox import config, insured
from miniprogram_stub.sandbox.ecert_protocol import (
    MESSAGES,
    OK,
    EcertError,
    Envelope,
    Reply,
    SeenOnce,
    decrypt,
    encrypt,
    reply,
    sign_ok,
)
from miniprogram_stub.sandbox.face import FaceClaims, IdType, InvalidAssertionError, Payment, verify_assertion
from miniprogram_stub.sandbox.faults import FaultBook, Partner, answered, delay_or_http_failure, garbled
from miniprogram_stub.sandbox.insured import NameMismatchError, NotInsuredError, Person

NAME = "ecert"
API_VERIFY_IDENTITY = "verify_identity"
API_VERIFY_FACE = "verify_face"
API_ENROL_NEWBORN = "enrol_newborn"
CHINA = ZoneInfo("Asia/Shanghai")
# Generated people are remembered so a later face check can find them; keep the newest only.
_MAX_REMEMBERED = 10_000


class VerifyIdentity(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    id_type: IdType
    id_number: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    face_assertion: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class VerifyFace(msgspec.Struct, forbid_unknown_fields=True):
    face_assertion: Annotated[str, msgspec.Meta(min_length=1)]


class EnrolNewborn(msgspec.Struct, forbid_unknown_fields=True):
    guardian_cert_no: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    birth_certificate_no: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    birth_date: date
    region_code: Annotated[str, msgspec.Meta(pattern="^[0-9]{6}$")]


@dataclass
class Newborn:
    person: Person
    birth_date: date
    guardians: set[str]  # cert numbers of those who enrolled it


class _ClaimedApp(msgspec.Struct):
    app_id: str = ""
    nonce: str = ""


@dataclass
class EcertState:
    nonces: SeenOnce = field(default_factory=lambda: SeenOnce(config.ECERT_NONCE_TTL_S))
    face_jtis: SeenOnce = field(default_factory=lambda: SeenOnce(config.FACE_JTI_TTL_S))
    generated: dict[str, Person] = field(default_factory=dict)  # by face digest (idd)
    newborns: dict[str, Newborn] = field(default_factory=dict)  # by birth-certificate number

    def remember(self, person: Person) -> None:
        # The face digest cannot be inverted, so the platform keeps whom it has met.
        self.generated.pop(person.idd, None)
        self.generated[person.idd] = person
        if len(self.generated) > _MAX_REMEMBERED:
            del self.generated[next(iter(self.generated))]


def _accept_face(token: str, platform: EcertState, expected_idd: str | None) -> FaceClaims:
    """The assertion's claims, once it has passed every face rule; its jti is then spent."""
    try:
        claims = verify_assertion(token)
    except InvalidAssertionError:
        raise EcertError("E2101") from None
    age = time.time() - claims.iat
    if age > config.FACE_MAX_AGE_S or age < -config.FACE_MAX_AHEAD_S:
        raise EcertError("E2102")
    if expected_idd is not None and claims.idd != expected_idd:
        raise EcertError("E2103")
    if not claims.liveness or claims.score < config.FACE_MIN_SCORE:
        raise EcertError("E2104")
    if platform.face_jtis.seen(claims.jti):
        raise EcertError("E2105")
    platform.face_jtis.add(claims.jti)
    return claims


def _active(person: Person) -> Person:
    if person.status != "active":
        raise EcertError("E2004")
    return person


def _verify_identity(data: Any, platform: EcertState) -> Person:
    ask = msgspec.convert(data, VerifyIdentity)
    try:
        person = insured.lookup(ask.name, ask.id_type, ask.id_number)
    except NotInsuredError:
        raise EcertError("E2001") from None
    except NameMismatchError:
        raise EcertError("E2002") from None
    if ask.face_assertion is not None:
        _accept_face(ask.face_assertion, platform, person.idd)
    if insured.by_idd(person.idd) is None:
        platform.remember(person)
    return _active(person)


class FaceChecked(msgspec.Struct, omit_defaults=True):
    """What the platform read of an assertion it accepted, for the relying party to hold it to:
    who took it (a kiosk), and what a face taken to pay consents to."""

    jti: str
    score: float
    liveness: bool
    iat: int
    aud: str | None = None
    pay: Payment | None = None


class FacePerson(Person):
    """verify_face's answer: the person, and the face check."""

    face: FaceChecked | None = None


def _verify_face(data: Any, platform: EcertState) -> Person:
    ask = msgspec.convert(data, VerifyFace)
    claims = _accept_face(ask.face_assertion, platform, None)
    person = insured.by_idd(claims.idd) or platform.generated.get(claims.idd)
    if person is None:
        raise EcertError("E2001")
    face = FaceChecked(claims.jti, claims.score, claims.liveness, claims.iat, claims.aud, claims.pay)
    return FacePerson(**msgspec.structs.asdict(_active(person)), face=face)


def _guardian(cert_no: str, platform: EcertState) -> Person:
    person = insured.seeded_by_cert_no(cert_no) or next(
        (p for p in platform.generated.values() if p.cert_no == cert_no), None
    )
    if person is None:
        raise EcertError("E2204")
    return _active(person)


def _enrol_newborn(data: Any, platform: EcertState) -> Person:
    """Enrol once per birth certificate: the same certificate again (by either parent) answers the
    same person, if its name and birth date agree."""
    ask = msgspec.convert(data, EnrolNewborn)
    number = ask.birth_certificate_no.upper()
    if not insured.valid_birth_certificate(number):
        raise EcertError("E2202")
    guardian = _guardian(ask.guardian_cert_no, platform)
    if ask.region_code != guardian.region_code:
        raise EcertError("E2205")
    enrolled = platform.newborns.get(number)
    if enrolled is not None:
        if (enrolled.person.name, enrolled.birth_date) != (ask.name, ask.birth_date):
            raise EcertError("E2203")
        enrolled.guardians.add(guardian.cert_no)
        return enrolled.person
    today = datetime.now(CHINA).date()
    if not today - timedelta(days=config.ECERT_NEWBORN_WINDOW_DAYS) <= ask.birth_date <= today:
        raise EcertError("E2201")
    person = insured.newborn(number, ask.name, guardian.region_code)
    platform.newborns[number] = Newborn(person, ask.birth_date, {guardian.cert_no})
    if len(platform.newborns) > _MAX_REMEMBERED:
        del platform.newborns[next(iter(platform.newborns))]
    return person


_APIS: dict[str, Callable[[Any, EcertState], Person]] = {
    API_VERIFY_IDENTITY: _verify_identity,
    API_VERIFY_FACE: _verify_face,
    API_ENROL_NEWBORN: _enrol_newborn,
}


def _answer(api: str, raw: bytes, platform: EcertState) -> Reply:
    run = _APIS.get(api)
    if run is None:
        raise EcertError("E1006")
    try:
        envelope = msgspec.json.decode(raw, type=Envelope)
    except msgspec.DecodeError as exc:
        raise EcertError("E1005", str(exc)) from None
    if envelope.app_id != config.ECERT_APP_ID:
        raise EcertError("E1003")
    if abs(time.time() - envelope.timestamp) > config.ECERT_TIMESTAMP_WINDOW_S:
        raise EcertError("E1002")
    if not sign_ok(envelope):
        raise EcertError("E1001")
    # Only a correctly signed request spends its nonce, whatever happens after.
    seen_key = (envelope.app_id, envelope.nonce)
    if platform.nonces.seen(seen_key):
        raise EcertError("E1007")
    platform.nonces.add(seen_key)
    data = decrypt(envelope.encrypt_data, envelope.app_id)
    try:
        result = run(data, platform)
    except msgspec.ValidationError as exc:
        raise EcertError("E1005", str(exc)) from None
    return reply(OK, MESSAGES[OK], encrypt(result, envelope.app_id), envelope.nonce)


def _claimed(raw: bytes) -> _ClaimedApp:
    """Whatever app_id and nonce the body claims, if it parses at all."""
    try:
        return msgspec.json.decode(raw, type=_ClaimedApp)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _ClaimedApp()


def provide_platform(state: State) -> EcertState:
    platform: EcertState = state[NAME]
    return platform


@post("/v1/{api:str}", status_code=200, operation_id="ecertApi")
async def call_api(
    api: str, request: Request[Any, Any, Any], book: FaultBook, platform: EcertState
) -> Response[Any]:
    raw = await request.body()
    # Never the decrypted personal data: the record shows who called what, nothing more.
    params = {"app_id": _claimed(raw).app_id[:64], "api": api}
    fault = book.take(NAME, api)
    plain = await delay_or_http_failure(fault)
    if plain is not None:
        book.record(NAME, api, params, f"http:{plain.status_code}", True)
        return plain
    try:
        # A faulted call fails before the envelope is read: no nonce or face jti is spent.
        if fault is not None and fault.code is not None:
            raise EcertError(fault.code)
        answer = _answer(api, raw, platform)
    except EcertError as exc:
        answer = reply(exc.code, exc.message, nonce=_claimed(raw).nonce[:64])
    outcome = "ok" if answer.code == OK else answer.code
    book.record(NAME, api, params, answered(fault, outcome), fault is not None)
    content = msgspec.json.encode(answer)
    return garbled(fault, Response(content, media_type="application/json"), content)


router = Router(
    "/ecert",
    route_handlers=[call_api],
    dependencies={"platform": Provide(provide_platform, sync_to_thread=False)},
)

PARTNER = Partner(NAME, frozenset(_APIS), frozenset({"code"}), router, EcertState)
