"""Patients bind and show their e-certificate; terminals turn codes and faces into visits."""

from typing import Any, Literal

from litestar import Controller, Response, delete, get, post
from litestar.params import FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from backend.auth.routes import PatientController, PatientDep
from backend.ecert import binding, qr, visits
from backend.ecert.schemas import (
    BindRequest,
    DecodeRequest,
    EcertRead,
    FaceRequest,
    QrCodeRead,
    VisitLookup,
    VisitOpened,
    VisitRead,
)
from backend.oauth.routes import PartnerDep, requires_scope
from backend.platform.deps import RuntimeDep
from backend.platform.headers import NO_STORE
from backend.platform.openapi import errors, partner_token, pictures, returns

NOT_BOUND = (404, "`ECERT_NOT_BOUND`: no e-certificate is bound to this account.")
NOT_A_TERMINAL = (403, "`INSUFFICIENT_SCOPE`, or `NOT_AN_INSTITUTION`: not an institution's terminal.")


QrFormat = Literal["svg", "png", "json"]


def qr_answer(code: QrCodeRead, format: QrFormat) -> Response[Any]:
    """A code as JSON, or as a picture with its expiry in `X-QR-Expires-At`."""
    if format == "json":
        return Response(code)
    media = "image/svg+xml" if format == "svg" else "image/png"
    headers = {"X-QR-Expires-At": code.expires_at.isoformat()}
    return Response(qr.render(code.payload, format), media_type=media, headers=headers)


class EcertController(PatientController):
    path = "/api/v1/ecert"
    tags = ["e-certificate"]

    @post(
        "/bind",
        status_code=HTTP_200_OK,
        operation_id="ecertBind",
        responses=errors(
            (409, "`ECERT_ALREADY_BOUND` (another account holds it), `ECERT_USER_ALREADY_BOUND`."),
            (422, "`ECERT_NOT_INSURED`, `ECERT_NAME_MISMATCH`, `ECERT_SUSPENDED`, a refused face."),
            (429, "`ECERT_BIND_RATE_LIMITED`: too many refused attempts in the window."),
            502,
            503,
        ),
    )
    async def bind(self, data: JSONBody[BindRequest], patient: PatientDep, runtime: RuntimeDep) -> EcertRead:
        """Bind the medical-insurance e-certificate: the document is checked here, then by the
        e-certificate platform (with a face check when `face_assertion` is given)."""
        return await binding.bind(runtime, patient, data)

    @get("/", operation_id="ecertGet", responses=errors(NOT_BOUND))
    async def show(self, patient: PatientDep) -> EcertRead:
        """The bound e-certificate, masked."""
        return await binding.current(patient)

    @delete("/", status_code=HTTP_204_NO_CONTENT, operation_id="ecertUnbind", responses=errors(NOT_BOUND))
    async def unbind(self, patient: PatientDep) -> None:
        """Unbind; the history is kept and live codes stop working."""
        await binding.unbind(patient)

    @get(
        "/qrcode",
        operation_id="ecertQrCode",
        operation_class=pictures("image/svg+xml", "image/png"),
        responses={200: returns(QrCodeRead, "The code: as JSON, or as a picture."), **errors(NOT_BOUND)},
    )
    async def qrcode(
        self,
        patient: PatientDep,
        runtime: RuntimeDep,
        format: FromQuery[QrFormat] = "json",
    ) -> Response[Any]:
        """A fresh single-use code, valid `MEDPAY_ECERT_QR_TTL_SECONDS` (60 s); it voids older ones.

        `json` gives the payload, `expires_at` and `refresh_in`; `svg` and `png` the picture,
        with the expiry in `X-QR-Expires-At`.
        """
        return qr_answer(await visits.issue_qr(runtime, patient), format)


class TerminalController(Controller):
    path = "/api/v1/partner"
    tags = ["e-certificate"]
    cache_control = NO_STORE

    @post(
        "/ecert/decode",
        status_code=HTTP_200_OK,
        middleware=[requires_scope("ecert:decode")],
        security=partner_token("ecert:decode"),
        operation_id="ecertDecode",
        responses=errors(
            NOT_A_TERMINAL,
            (409, "`ECERT_QR_USED`, or `ECERT_QR_SUPERSEDED` by a newer code."),
            (
                410,
                "`ECERT_QR_EXPIRED`, or what it was issued under is gone (the e-certificate unbound; "
                "for a relative's code, the family link ended or no longer grants `manage`).",
            ),
        ),
    )
    async def decode(
        self, data: JSONBody[DecodeRequest], partner: PartnerDep, runtime: RuntimeDep
    ) -> VisitOpened:
        """Turn a patient's QR code into a visit at this terminal's institution (once per code)."""
        return await visits.decode_qr(runtime, partner, data.qr)

    @post(
        "/ecert/face",
        status_code=HTTP_200_OK,
        middleware=[requires_scope("ecert:decode")],
        security=partner_token("ecert:decode"),
        operation_id="ecertFace",
        responses=errors(
            NOT_A_TERMINAL,
            (404, "`ECERT_NOT_BOUND`: this person has not bound an e-certificate."),
            (409, "`ECERT_FACE_REPLAYED`: this assertion was already used."),
            (422, "`ECERT_FACE_MISMATCH`, `ECERT_FACE_REJECTED`, ...: the platform refused the face."),
            502,
            503,
        ),
    )
    async def face(
        self, data: JSONBody[FaceRequest], partner: PartnerDep, runtime: RuntimeDep
    ) -> VisitOpened:
        """At a kiosk: a face assertion of a patient with a bound e-certificate opens a visit."""
        return await visits.identify_face(runtime, partner, data.face_assertion)

    @post(
        "/visits/lookup",
        status_code=HTTP_200_OK,
        middleware=[requires_scope(None)],
        security=partner_token(),
        operation_id="visitLookup",
        responses=errors(
            (403, "`VISIT_WRONG_INSTITUTION`: the visit was opened at another institution."),
            (404, "`VISIT_NOT_FOUND`: no such visit, or it has ended."),
        ),
    )
    async def lookup(self, data: JSONBody[VisitLookup], partner: PartnerDep) -> VisitRead:
        """The visit behind a token, for a partner of the institution it was opened at."""
        return await visits.resolve_visit(data.visit_token, partner)
