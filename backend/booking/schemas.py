"""What goes over the wire for booking: the schedules hospitals publish, the catalogue patients
browse, appointments and waitlist places."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from backend.billing.schemas import Category
from backend.ecert.schemas import VisitToken
from backend.platform.schemas import END, PROSE, TEXT, Wire

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=rf"^[A-Za-z0-9._:/-]+{END}")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=TEXT)]
Prose = Annotated[str, msgspec.Meta(max_length=2000, pattern=PROSE)]
# HH:MM, Beijing time
Clock = Annotated[
    str, msgspec.Meta(min_length=5, max_length=5, pattern=rf"^([01][0-9]|2[0-3]):[0-5][0-9]{END}")
]
Title = Literal["CHIEF", "ASSOCIATE_CHIEF", "ATTENDING", "RESIDENT"]  # 主任 / 副主任 / 主治 / 住院医师
PeriodName = Literal["MORNING", "AFTERNOON", "EVENING"]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


# -- publishing (hospitals) ------------------------------------------------------------------


class FeeIn(Wire):
    title: Title
    fee_fen: Annotated[int, msgspec.Meta(ge=1, le=10**7)]
    item_code: Code  # the fee as an item of the registration bill
    item_name: Name
    category: Category = "A"


class DepartmentIn(Wire):
    code: Code
    name: Name
    intro: Prose = ""


class DoctorIn(Wire):
    code: Code
    department: Code  # a department's code, in this request or published before
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=TEXT)]
    title: Title
    specialty: Prose = ""


class SessionIn(Wire):
    code: Code
    doctor: Code
    date: date
    period: PeriodName
    start: Clock
    end: Clock
    capacity: Annotated[int, msgspec.Meta(ge=0, le=10000)]
    slot_minutes: Annotated[int, msgspec.Meta(ge=1, le=720)] | None = None  # numbered time slots
    cancelled: bool = False  # 停诊: its appointments are cancelled, refunded and their patients told
    cancel_reason: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=TEXT)] = "医生停诊"


class ScheduleUpsert(Wire):
    """One institution's catalogue for a date range: what is named is created or updated;
    sessions not named are left as they are (cancel one by naming it with `cancelled`)."""

    from_date: date = msgspec.field(name="from")
    to_date: date = msgspec.field(name="to")
    fees: Annotated[list[FeeIn], msgspec.Meta(max_length=20)] = []
    departments: Annotated[list[DepartmentIn], msgspec.Meta(max_length=500)] = []
    doctors: Annotated[list[DoctorIn], msgspec.Meta(max_length=5000)] = []
    sessions: Annotated[list[SessionIn], msgspec.Meta(max_length=20000)] = []


class ScheduleResult(Wire, omit_defaults=False):
    fees: int
    departments: int
    doctors: int
    sessions_created: int
    sessions_updated: int
    sessions_cancelled: int  # newly cancelled: their appointments are being cancelled and refunded


# -- browsing (patients) ---------------------------------------------------------------------


class HospitalRead(Wire, omit_defaults=False):
    id: int
    code: str
    name: str
    level: int
    region_code: str


class DepartmentRead(Wire, omit_defaults=False):
    id: int
    code: str
    name: str
    intro: str


class SessionRead(Wire, omit_defaults=False):
    id: int
    doctor_id: int
    date: date
    period: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    places_left: int
    fee_fen: int
    numbered_slots: bool
    state: str  # OPEN or CANCELLED
    bookable: bool  # open for booking now, with a place left


class DoctorRead(Wire, omit_defaults=False):
    id: int
    code: str
    name: str
    title: str
    specialty: str
    department_id: int
    fee_fen: int | None
    sessions: list[SessionRead]  # on the day asked for (`date`), if one was


class HospitalPage(Wire, omit_defaults=False):
    items: list[HospitalRead]
    next_after: str | None  # pass as `after` for the next page; None on the last


class DepartmentPage(Wire, omit_defaults=False):
    items: list[DepartmentRead]
    next_after: str | None


class DoctorPage(Wire, omit_defaults=False):
    items: list[DoctorRead]
    next_after: str | None


class SessionPage(Wire, omit_defaults=False):
    items: list[SessionRead]
    next_after: str | None


# -- appointments ----------------------------------------------------------------------------


class AppointmentCreate(Wire):
    session_id: Id
    slot: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None  # a numbered session's slot
    relative_link_id: Id | None = None  # book for the relative of this family link (`manage`)


class AppointmentRead(Wire, omit_defaults=False):
    id: uuid.UUID
    state: str
    session_id: int
    hospital: str
    department: str
    doctor: str
    date: date
    period: str
    starts_at: datetime  # the session's, or the slot's
    slot: int | None
    queue_no: int | None
    fee_fen: int
    bill_id: uuid.UUID
    pay_url: str
    expires_at: datetime | None  # while HELD: pay the bill before this
    waitlist_id: int | None
    created_at: datetime
    ended_reason: str | None


class AppointmentPage(Wire, omit_defaults=False):
    items: list[AppointmentRead]
    next_before: datetime | None
    no_shows: int  # in the last `MEDPAY_BOOKING_NO_SHOW_WINDOW_DAYS` days
    barred: bool  # too many no-shows to book


class CheckIn(Wire):
    visit_token: VisitToken


class WaitlistRead(Wire, omit_defaults=False):
    id: int
    session_id: int
    state: str
    position: int | None  # 1 = next to be offered a place, while WAITING
    appointment_id: uuid.UUID | None  # the place offered
    created_at: datetime


# -- walk-ins at a kiosk ---------------------------------------------------------------------


class WalkInCreate(Wire):
    visit_token: VisitToken  # the visit the patient's face check opened at this kiosk's institution
    session_id: Id
    slot: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None  # a numbered session's slot


class WalkInSessionRead(Wire, omit_defaults=False):
    """A session of today at the kiosk's institution that a walk-in can register for now."""

    id: int
    department_id: int
    department: str
    doctor_id: int
    doctor: str
    title: str  # the doctor's: decides the fee
    date: date
    period: str
    starts_at: datetime
    ends_at: datetime
    fee_fen: int
    places_left: int
    numbered_slots: bool


class WalkInSessionPage(Wire, omit_defaults=False):
    items: list[WalkInSessionRead]
    next_after: str | None
