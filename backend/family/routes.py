"""Family over HTTP: invitations and their acceptance, relatives added by proxy, newborns, links,
grants, and a relative's QR code on the holder's phone."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get, post, put
from litestar.params import FromQuery, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from backend.auth.routes import PatientController, PatientDep
from backend.ecert.routes import QrFormat, qr_answer
from backend.ecert.schemas import QrCodeRead
from backend.family import links, newborns, relative_qr
from backend.family.schemas import (
    FamilyRead,
    GrantsUpdate,
    InvitationAccept,
    InvitationCreate,
    InvitationRead,
    LinkRead,
    NewbornCreate,
    RelativeCreate,
)
from backend.platform.deps import RuntimeDep
from backend.platform.openapi import errors, pictures, returns

LinkId = Annotated[int, PathParameter(ge=1, le=2**31 - 1, description="the link's id")]
NOT_FOUND = (404, "`FAMILY_LINK_NOT_FOUND`: no such link, or not yours.")
NOT_BOUND = (404, "`ECERT_NOT_BOUND`: bind your own e-certificate first.")


class FamilyController(PatientController):
    path = "/api/v1/family"
    tags = ["family"]

    @get("/", operation_id="familyGet")
    async def show(self, patient: PatientDep) -> FamilyRead:
        """The relatives you look after, and those who look after you, with each link's grants."""
        return await links.family_of(patient)

    @post(
        "/invitations",
        status_code=HTTP_201_CREATED,
        operation_id="familyInvite",
        responses=errors(NOT_BOUND, (422, "`RELATION_NOT_ALLOWED` by your region's policy.")),
    )
    async def invite(
        self, data: JSONBody[InvitationCreate], patient: PatientDep, runtime: RuntimeDep
    ) -> InvitationRead:
        """A one-time code and its QR code, valid `MEDPAY_FAMILY_INVITATION_HOURS`: the relative
        accepts it from their own account, which links them to you."""
        return await links.invite(runtime, patient, data)

    @post(
        "/invitations/accept",
        status_code=HTTP_201_CREATED,
        operation_id="familyAccept",
        responses=errors(
            (404, "`INVITATION_NOT_FOUND` (or expired), or `ECERT_NOT_BOUND`."),
            (
                409,
                "`RELATION_MISMATCH`, `INVITATION_USED`, `FAMILY_SELF`, `FAMILY_LINK_EXISTS`, `FAMILY_FULL`.",
            ),
        ),
    )
    async def accept(
        self, data: JSONBody[InvitationAccept], patient: PatientDep, runtime: RuntimeDep
    ) -> LinkRead:
        """Accept an invitation, stating what the one who invited is to you."""
        return await links.accept(runtime, patient, data)

    @post(
        "/relatives",
        status_code=HTTP_201_CREATED,
        operation_id="familyAddRelative",
        responses=errors(
            NOT_BOUND,
            (
                409,
                "`RELATIVE_HAS_ACCOUNT` (invite them), `FAMILY_SELF`, `FAMILY_LINK_EXISTS`, `FAMILY_FULL`.",
            ),
            (
                422,
                "`RELATION_NOT_ALLOWED`; the platform's refusals as at binding (`ECERT_NAME_MISMATCH`, ...).",
            ),
            (429, "`ECERT_BIND_RATE_LIMITED`: too many refused attempts."),
        ),
    )
    async def add_relative(
        self, data: JSONBody[RelativeCreate], patient: PatientDep, runtime: RuntimeDep
    ) -> LinkRead:
        """A relative without a phone (an elder, a child): their name, document and face (not for a
        child under 16) verified by the e-certificate platform; they are in your care, `manage` granted."""
        return await links.add_relative(runtime, patient, data)

    @post(
        "/newborns",
        status_code=HTTP_201_CREATED,
        operation_id="familyAddNewborn",
        responses={
            200: returns(LinkRead, "This birth certificate is linked to you already: the link."),
            **errors(
                NOT_BOUND,
                (409, "`FAMILY_FULL`."),
                (
                    422,
                    "`VALIDATION_ERROR` (`birth_certificate_no`: a letter and 9 digits; `birth_date` in "
                    "the future); the platform's refusals: `ECERT_NEWBORN_OUT_OF_WINDOW`, "
                    "`ECERT_NEWBORN_MISMATCH`, `ECERT_BIRTH_CERTIFICATE_INVALID`, "
                    "`ECERT_GUARDIAN_NOT_INSURED`, `ECERT_SUSPENDED`.",
                ),
                (429, "`FAMILY_PROXY_LIMITED`, `ECERT_BIND_RATE_LIMITED`."),
                502,
                503,
            ),
        },
    )
    async def add_newborn(
        self, data: JSONBody[NewbornCreate], patient: PatientDep, runtime: RuntimeDep
    ) -> Response[LinkRead]:
        """Your newborn, by birth-certificate number (出生医学证明编号), name and birth date: the
        e-certificate platform enrols the baby in resident insurance in your region, and the baby
        is your `CHILD` in your care (`manage`). The same birth certificate again answers your link
        (200); the other parent links the same baby with a link of their own."""
        link, created = await newborns.add_newborn(runtime, patient, data)
        return Response(link, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/links/{link_id:int}/qrcode",
        operation_id="familyRelativeQrCode",
        operation_class=pictures("image/svg+xml", "image/png"),
        responses={
            200: returns(QrCodeRead, "The relative's code: as JSON, or as a picture."),
            **errors((404, "`FAMILY_LINK_NOT_FOUND`: no live link of yours that grants `manage`.")),
        },
    )
    async def relative_qrcode(
        self,
        link_id: LinkId,
        patient: PatientDep,
        runtime: RuntimeDep,
        format: FromQuery[QrFormat] = "json",
    ) -> Response[Any]:
        """A fresh single-use code of the relative you manage, as `GET /api/v1/ecert/qrcode` gives
        your own: it voids the relative's older codes, and works only while the link still
        grants you `manage`."""
        return qr_answer(await relative_qr.issue(runtime, patient, link_id), format)

    @post(
        "/links/{link_id:int}/end",
        status_code=HTTP_200_OK,
        operation_id="familyEndLink",
        responses=errors(NOT_FOUND),
    )
    async def end(self, link_id: LinkId, patient: PatientDep) -> LinkRead:
        """Either side ends the link; nothing new is done under it from now on."""
        return await links.end(patient, link_id)

    @put(
        "/links/{link_id:int}/grants",
        operation_id="familyGrants",
        responses=errors(
            (
                403,
                "`GRANT_NOT_YOURS`: `manage` is the relative's; `pay`, `credit_cap_fen` the holder's.",
            ),
            NOT_FOUND,
            (409, "`FAMILY_LINK_ENDED`."),
            (422, "`FAMILY_PAY_EMPLOYEE_ONLY`."),
        ),
    )
    async def grants(self, link_id: LinkId, data: JSONBody[GrantsUpdate], patient: PatientDep) -> LinkRead:
        """Give or take back the grants that are yours to give on this link."""
        return await links.update_grants(patient, link_id, data)
