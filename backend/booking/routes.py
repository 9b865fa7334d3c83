"""Booking over HTTP: patients browse the catalogue, hold and cancel appointments and queue on
waitlists; hospitals publish schedules; terminals check patients in; kiosks register walk-ins."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from backend.auth.routes import PatientController, PatientDep
from backend.billing.routes import Before, _rfc3339
from backend.booking import attendance, browse, cancellation, catalogue, holds, views, waitlist, walk_in
from backend.booking.schemas import (
    AppointmentCreate,
    AppointmentPage,
    AppointmentRead,
    CheckIn,
    DepartmentPage,
    DoctorPage,
    HospitalPage,
    ScheduleResult,
    ScheduleUpsert,
    SessionPage,
    WaitlistRead,
    WalkInCreate,
    WalkInSessionPage,
)
from backend.oauth.routes import PartnerDep, requires_scope
from backend.platform import idempotency
from backend.platform.deps import RuntimeDep
from backend.platform.errors import AppError
from backend.platform.headers import NO_STORE
from backend.platform.idempotency import IDEMPOTENT, KeyHeader
from backend.platform.openapi import errors, partner_token, returns
from backend.platform.schemas import TEXT

Id = Annotated[int, PathParameter(ge=1, le=2**31 - 1)]
AppointmentId = Annotated[uuid.UUID, PathParameter(description="the appointment's id")]
Limit = Annotated[int, QueryParameter(ge=1, le=100)]
After = Annotated[
    str | None, QueryParameter(description="the `next_after` of the previous page", max_length=200)
]
VisitToken = Annotated[
    str,
    QueryParameter(
        description="the visit the patient's face check opened here", min_length=16, max_length=128
    ),
]
NOT_FOUND = (404, "`APPOINTMENT_NOT_FOUND`: no such appointment, or not yours.")
BAD_CURSOR = (422, "`VALIDATION_ERROR`: `after` is not a cursor this list gave out.")


# Dates in the query are read by `_date`, so that a bad one is refused naming the query's own name.
_AS_DATE = {"one_of": None, "type": "string", "format": "date"}
OnDay = Annotated[str | None, QueryParameter(name="date", schema_extra=_AS_DATE)]
FromDay = Annotated[str | None, QueryParameter(name="from", schema_extra=_AS_DATE)]
ToDay = Annotated[str | None, QueryParameter(name="to", schema_extra=_AS_DATE)]


def _date(field: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise AppError(
            f"invalid value for '{field}': a date is YYYY-MM-DD",
            code="VALIDATION_ERROR",
            detail={"field": field},
        ) from None


class CatalogueController(PatientController):
    """What patients browse: hospitals, departments, doctors, sessions with their places left."""

    path = "/api/v1"
    tags = ["booking"]

    @get("/hospitals", operation_id="hospitalList", responses=errors(BAD_CURSOR))
    async def hospitals(
        self,
        region: Annotated[str | None, QueryParameter(pattern=r"^[0-9]{2,6}$")] = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=50, pattern=TEXT)] = None,
        after: After = None,
        limit: Limit = 20,
    ) -> HospitalPage:
        """Hospitals in a region (a code, or its prefix: `33` is Zhejiang) whose name holds `q`."""
        return await browse.hospitals_page(region, q, after, limit)

    @get(
        "/hospitals/{hospital_id:int}/departments",
        operation_id="hospitalDepartments",
        responses=errors((404, "`HOSPITAL_NOT_FOUND`."), BAD_CURSOR),
    )
    async def departments(self, hospital_id: Id, after: After = None, limit: Limit = 50) -> DepartmentPage:
        return await browse.departments_page(hospital_id, after, limit)

    @get(
        "/departments/{department_id:int}/doctors",
        operation_id="departmentDoctors",
        responses=errors((404, "`DEPARTMENT_NOT_FOUND`."), BAD_CURSOR),
    )
    async def doctors(
        self,
        department_id: Id,
        runtime: RuntimeDep,
        day: OnDay = None,
        after: After = None,
        limit: Limit = 20,
    ) -> DoctorPage:
        """The department's doctors and their fees; with `date`, those working that day, each with
        that day's sessions."""
        return await browse.doctors_page(runtime, department_id, _date("date", day), after, limit)

    @get(
        "/doctors/{doctor_id:int}/sessions",
        operation_id="doctorSessions",
        responses=errors(
            (404, "`DOCTOR_NOT_FOUND`."),
            (422, "`VALIDATION_ERROR`: `to` before `from`, too long a span, or a bad `after`."),
        ),
    )
    async def sessions(
        self,
        doctor_id: Id,
        runtime: RuntimeDep,
        start: FromDay = None,
        end: ToDay = None,
        after: After = None,
        limit: Limit = 50,
    ) -> SessionPage:
        """The doctor's sessions from `from` to `to` (today and the booking window by default),
        with the places left and whether each can be booked now."""
        return await browse.sessions_page(
            runtime, doctor_id, _date("from", start), _date("to", end), after, limit
        )


class AppointmentController(PatientController):
    path = "/api/v1/appointments"
    tags = ["booking"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        operation_id="appointmentCreate",
        responses={
            201: returns(AppointmentRead, "`HELD`: pay its bill (`bill_id`) before `expires_at`."),
            **errors(
                (403, "`BOOKING_BARRED`: too many no-shows lately."),
                (404, "`SESSION_NOT_FOUND`, or `ECERT_NOT_BOUND`."),
                (
                    409,
                    "`SESSION_FULL` (join the waitlist), `SESSION_CLOSED` (cancelled or started), "
                    "`BOOKING_NOT_OPEN`, `APPOINTMENT_DUPLICATE`, `SLOT_TAKEN`.",
                ),
                (422, "`VALIDATION_ERROR`: a slot the session does not have."),
                *IDEMPOTENT,
            ),
        },
    )
    async def create(
        self,
        data: JSONBody[AppointmentCreate],
        patient: PatientDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Hold a place (a numbered `slot`, or the first free one) and get the registration bill
        for its fee: paying it through `/api/v1/bills/{id}/pay` confirms the appointment with its
        queue number. Unpaid, the hold ends at `expires_at` and the place is freed."""

        async def work(request_key: str) -> tuple[int, AppointmentRead]:
            return HTTP_201_CREATED, await holds.book(runtime, patient, data, request_key)

        return await idempotency.once(request, f"user:{patient.user_id}", idempotency_key, data, work)

    @get("/", operation_id="appointmentList")
    async def list_appointments(
        self, patient: PatientDep, runtime: RuntimeDep, limit: Limit = 20, before: Before = None
    ) -> AppointmentPage:
        """The patient's appointments, newest first, and their no-shows of late."""
        return await views.list_for(runtime, patient, limit, _rfc3339("before", before))

    @get("/{appointment_id:uuid}", operation_id="appointmentGet", responses=errors(NOT_FOUND))
    async def show(
        self, appointment_id: AppointmentId, patient: PatientDep, runtime: RuntimeDep
    ) -> AppointmentRead:
        return await views.show(runtime, patient, appointment_id)

    @post(
        "/{appointment_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        operation_id="appointmentCancel",
        responses={
            200: returns(AppointmentRead, "`CANCELLED`; a paid fee is refunded in full."),
            **errors(
                NOT_FOUND,
                (
                    409,
                    "`APPOINTMENT_CANCEL_TOO_LATE` (past the cut-off), `APPOINTMENT_PAYMENT_IN_PROGRESS`, "
                    "`APPOINTMENT_NOT_CANCELLABLE`.",
                ),
                *IDEMPOTENT,
            ),
        },
    )
    async def cancel(
        self,
        appointment_id: AppointmentId,
        patient: PatientDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Cancel: a hold ends; a confirmed appointment is refunded, up to
        `MEDPAY_BOOKING_CANCEL_CUTOFF_MINUTES` before its session."""

        async def work(_: str) -> tuple[int, AppointmentRead]:
            return HTTP_200_OK, await cancellation.cancel(runtime, patient, appointment_id)

        return await idempotency.once(request, f"user:{patient.user_id}", idempotency_key, None, work)


class WaitlistController(PatientController):
    path = "/api/v1"
    tags = ["booking"]

    @post(
        "/sessions/{session_id:int}/waitlist",
        status_code=HTTP_201_CREATED,
        operation_id="waitlistJoin",
        responses={
            200: returns(WaitlistRead, "Already in line (or offered a place): the same entry."),
            201: returns(WaitlistRead, "In line (`position`)."),
            **errors(
                (404, "`SESSION_NOT_FOUND`, or `ECERT_NOT_BOUND`."),
                (409, "`SESSION_NOT_FULL` (book it), `SESSION_CLOSED`, `APPOINTMENT_DUPLICATE`."),
            ),
        },
    )
    async def join(self, session_id: Id, patient: PatientDep, runtime: RuntimeDep) -> Response[WaitlistRead]:
        """Queue for a full session: a freed place is offered to the first in line as a hold with
        its own payment window (`MEDPAY_BOOKING_OFFER_SECONDS`) and a notification."""
        joined, entry = await waitlist.join(runtime, patient, session_id)
        return Response(entry, status_code=HTTP_201_CREATED if joined else HTTP_200_OK)

    @get("/waitlist", operation_id="waitlistMine")
    async def mine(self, patient: PatientDep) -> list[WaitlistRead]:
        return await waitlist.mine(patient)

    @delete(
        "/waitlist/{entry_id:int}",
        status_code=HTTP_200_OK,
        operation_id="waitlistLeave",
        responses=errors((404, "`WAITLIST_NOT_FOUND`.")),
    )
    async def leave(self, entry_id: Id, patient: PatientDep) -> WaitlistRead:
        """Leave the line while waiting (a place already offered is cancelled as its appointment)."""
        return await waitlist.leave(patient, entry_id)


class PartnerScheduleController(Controller):
    path = "/api/v1/partner/schedules"
    tags = ["booking"]
    middleware = [requires_scope("bookings:write")]
    security = partner_token("bookings:write")
    cache_control = NO_STORE
    request_max_body_size = 8 * 1024 * 1024

    @put(
        "/",
        operation_id="partnerSchedulesPut",
        responses=errors(
            (403, "`INSUFFICIENT_SCOPE`, `NO_INSTITUTION`."),
            (
                409,
                "`CAPACITY_BELOW_BOOKED`, `SESSION_HAS_BOOKINGS` (moving a booked session), "
                "`SESSION_CANCELLED` (reopening one).",
            ),
            (422, "`VALIDATION_ERROR`, the field named (`sessions[3].doctor`)."),
        ),
    )
    async def publish(
        self, data: JSONBody[ScheduleUpsert], partner: PartnerDep, runtime: RuntimeDep
    ) -> ScheduleResult:
        """Publish the institution's fees, departments, doctors and sessions for a date range: what
        is named is created or updated (repeating it changes nothing); a session named with
        `cancelled` (停诊) has its appointments cancelled, refunded and their patients told."""
        return await catalogue.publish(runtime, partner, data)


class PartnerAppointmentController(Controller):
    path = "/api/v1/partner/appointments"
    tags = ["booking"]
    middleware = [requires_scope("bookings:check-in")]
    security = partner_token("bookings:check-in")
    cache_control = NO_STORE

    @post(
        "/{appointment_id:uuid}/check-in",
        status_code=HTTP_200_OK,
        operation_id="partnerAppointmentCheckIn",
        responses=errors(
            (404, "`APPOINTMENT_NOT_FOUND` (or another institution's), `VISIT_NOT_FOUND`."),
            (
                409,
                "`CHECK_IN_WRONG_PATIENT`, `APPOINTMENT_NOT_PAID`, `APPOINTMENT_NOT_CONFIRMED`, "
                "`CHECK_IN_NOT_OPEN` (before its day), `CHECK_IN_CLOSED` (the session ended).",
            ),
        ),
    )
    async def check_in(
        self, appointment_id: AppointmentId, data: JSONBody[CheckIn], partner: PartnerDep, runtime: RuntimeDep
    ) -> AppointmentRead:
        """Check the patient in with the `visit_token` their QR code or face check opened here."""
        return await attendance.check_in(runtime, partner, appointment_id, data)


class KioskWalkInController(Controller):
    """Walk-in registration at a self-service kiosk, for patients without a phone."""

    path = "/api/v1/partner/kiosk"
    tags = ["booking"]
    middleware = [requires_scope("kiosk:pay")]
    security = partner_token("kiosk:pay")
    cache_control = NO_STORE

    @get(
        "/sessions",
        operation_id="kioskSessionList",
        responses=errors(
            (403, "`INSUFFICIENT_SCOPE`, `NO_INSTITUTION`, `VISIT_WRONG_INSTITUTION`."),
            (404, "`VISIT_NOT_FOUND` (or ended)."),
            BAD_CURSOR,
        ),
    )
    async def sessions(
        self, visit_token: VisitToken, partner: PartnerDep, after: After = None, limit: Limit = 50
    ) -> WalkInSessionPage:
        """Today's open sessions of this institution with a place left, by start, that a walk-in
        can register for now: those under way too, until shortly before they end."""
        return await walk_in.sessions_page(partner, visit_token, after, limit)

    @post(
        "/appointments",
        status_code=HTTP_201_CREATED,
        operation_id="kioskAppointmentCreate",
        responses={
            201: returns(AppointmentRead, "`HELD`: pay its bill (`bill_id`) before `expires_at`."),
            **errors(
                (
                    403,
                    "`INSUFFICIENT_SCOPE`, `NO_INSTITUTION`, `VISIT_WRONG_INSTITUTION`, `BOOKING_BARRED` "
                    "(too many no-shows lately).",
                ),
                (
                    404,
                    "`VISIT_NOT_FOUND`, `SESSION_NOT_FOUND` (or another institution's), `ECERT_NOT_BOUND` "
                    "(the patient has no account).",
                ),
                (
                    409,
                    "`SESSION_FULL`, `SESSION_CLOSED` (cancelled or ending), `APPOINTMENT_DUPLICATE`, "
                    "`SLOT_TAKEN`.",
                ),
                (422, "`VALIDATION_ERROR`: a slot the session does not have."),
                *IDEMPOTENT,
            ),
        },
    )
    async def create(
        self,
        data: JSONBody[WalkInCreate],
        partner: PartnerDep,
        runtime: RuntimeDep,
        request: Request[Any, Any, Any],
        idempotency_key: KeyHeader = None,
    ) -> Response[bytes]:
        """Hold a place of one of this institution's sessions for the visit's patient, as a phone
        booking does, with its registration bill (`bill_id`) to pay at the kiosk."""

        async def work(request_key: str) -> tuple[int, AppointmentRead]:
            return HTTP_201_CREATED, await walk_in.book(runtime, partner, data, request_key)

        return await idempotency.once(request, f"partner:{partner.client_id}", idempotency_key, data, work)
