"""Booking: the catalogue, appointments held and paid as bills, waitlists; hospitals publishing their
schedules and checking patients in."""

from __future__ import annotations

from datetime import date, datetime

from miniprogram_stub.api import models as m
from miniprogram_stub.api._http import Caller, idempotency, operation
from miniprogram_stub.api.bills import Id


class Booking:
    def __init__(self, caller: Caller) -> None:
        self._c = caller

    @operation("hospitalList")
    async def hospitals(
        self,
        *,
        region: str | None = None,
        q: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> m.HospitalPage:
        params = {"region": region, "q": q, "after": after, "limit": limit}
        return await self._c.call(m.HospitalPage, "GET", "/api/v1/hospitals", params=params)

    @operation("hospitalDepartments")
    async def departments(
        self, hospital_id: int, *, after: str | None = None, limit: int | None = None
    ) -> m.DepartmentPage:
        path = f"/api/v1/hospitals/{hospital_id}/departments"
        return await self._c.call(m.DepartmentPage, "GET", path, params={"after": after, "limit": limit})

    @operation("departmentDoctors")
    async def doctors(
        self,
        department_id: int,
        *,
        date: date | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> m.DoctorPage:
        """The department's doctors with their fees, and `date`'s sessions."""
        params = {"date": date, "after": after, "limit": limit}
        path = f"/api/v1/departments/{department_id}/doctors"
        return await self._c.call(m.DoctorPage, "GET", path, params=params)

    @operation("doctorSessions")
    async def sessions(
        self,
        doctor_id: int,
        *,
        from_: date | None = None,
        to: date | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> m.SessionPage:
        params = {"from": from_, "to": to, "after": after, "limit": limit}
        return await self._c.call(
            m.SessionPage, "GET", f"/api/v1/doctors/{doctor_id}/sessions", params=params
        )

    @operation("appointmentCreate")
    async def book(self, body: m.AppointmentCreate, *, key: str | None = None) -> m.AppointmentRead:
        """`HELD`: a place, and its registration bill (`bill_id`) to pay before `expires_at`."""
        path = "/api/v1/appointments"
        return await self._c.call(m.AppointmentRead, "POST", path, body=body, headers=idempotency(key))

    @operation("appointmentList")
    async def appointments(
        self, *, limit: int | None = None, before: datetime | None = None
    ) -> m.AppointmentPage:
        params = {"limit": limit, "before": before}
        return await self._c.call(m.AppointmentPage, "GET", "/api/v1/appointments", params=params)

    @operation("appointmentGet")
    async def appointment(self, appointment_id: Id) -> m.AppointmentRead:
        return await self._c.call(m.AppointmentRead, "GET", f"/api/v1/appointments/{appointment_id}")

    @operation("appointmentCancel")
    async def cancel(self, appointment_id: Id, *, key: str | None = None) -> m.AppointmentRead:
        """`CANCELLED`: a hold's bill closed, a paid fee refunded (until the cut-off)."""
        path = f"/api/v1/appointments/{appointment_id}/cancel"
        return await self._c.call(m.AppointmentRead, "POST", path, headers=idempotency(key))

    @operation("waitlistJoin")
    async def join_waitlist(self, session_id: int) -> m.WaitlistRead:
        return await self._c.call(m.WaitlistRead, "POST", f"/api/v1/sessions/{session_id}/waitlist")

    @operation("waitlistMine")
    async def waitlist(self) -> list[m.WaitlistRead]:
        return await self._c.call(list[m.WaitlistRead], "GET", "/api/v1/waitlist")

    @operation("waitlistLeave")
    async def leave_waitlist(self, entry_id: int) -> m.WaitlistRead:
        return await self._c.call(m.WaitlistRead, "DELETE", f"/api/v1/waitlist/{entry_id}")

    # The hospital's system (`bookings:write`), its terminals (`bookings:check-in`).

    @operation("partnerSchedulesPut")
    async def publish_schedules(self, body: m.ScheduleUpsert) -> m.ScheduleResult:
        return await self._c.call(m.ScheduleResult, "PUT", "/api/v1/partner/schedules", body=body)

    @operation("partnerAppointmentCheckIn")
    async def check_in(self, appointment_id: Id, visit_token: str) -> m.AppointmentRead:
        path = f"/api/v1/partner/appointments/{appointment_id}/check-in"
        body = m.CheckIn(visit_token=visit_token)
        return await self._c.call(m.AppointmentRead, "POST", path, body=body)
