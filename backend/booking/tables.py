"""The catalogue (departments, doctors, fees, sessions), appointments and waitlists, and the
states each moves through. A session counts its places in `booked`, changed only by guarded
updates (`WHERE booked < capacity`): the count every booking, expiry and cancel goes through."""

from enum import StrEnum

from piccolo.columns import (
    UUID,
    BigInt,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.constraints import Check, Unique
from piccolo.table import Table

from backend.billing.tables import Bill, one_of
from backend.ecert.tables import InsuredPerson
from backend.hospitals.tables import Institution


class Period(StrEnum):
    MORNING = "MORNING"
    AFTERNOON = "AFTERNOON"
    EVENING = "EVENING"


class SessionState(StrEnum):
    """OPEN (bookable until it starts) or CANCELLED (停诊: its appointments are cancelled and refunded)."""

    OPEN = "OPEN"
    CANCELLED = "CANCELLED"


class AppointmentState(StrEnum):
    """HELD (a place reserved, its fee unpaid) -> CONFIRMED (paid) -> CHECKED_IN or NO_SHOW;
    HELD -> EXPIRED (unpaid in time); HELD or CONFIRMED -> CANCELLED (by the patient, or 停诊)."""

    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    CHECKED_IN = "CHECKED_IN"
    NO_SHOW = "NO_SHOW"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


# The appointments holding a place of their session.
HOLDING = (
    AppointmentState.HELD,
    AppointmentState.CONFIRMED,
    AppointmentState.CHECKED_IN,
    AppointmentState.NO_SHOW,
)
# The appointments that keep their patient from booking the same doctor that day again.
ACTIVE = (AppointmentState.HELD, AppointmentState.CONFIRMED, AppointmentState.CHECKED_IN)


class WaitlistState(StrEnum):
    """WAITING -> OFFERED (a freed place held for them) -> BOOKED (paid) or LAPSED (not paid in
    time: the next in line is offered it); WAITING -> LEFT (they gave up) or CLOSED (the session
    was cancelled or began, or they booked the doctor that day otherwise)."""

    WAITING = "WAITING"
    OFFERED = "OFFERED"
    BOOKED = "BOOKED"
    LAPSED = "LAPSED"
    LEFT = "LEFT"
    CLOSED = "CLOSED"


class Department(Table, tablename="booking_department"):
    id = Serial(primary_key=True)
    institution_id = ForeignKey(Institution, null=False)
    code = Varchar(length=64)  # the hospital's own
    name = Varchar(length=100)
    intro = Text(default="")
    updated_at = Timestamptz()

    department_code_once = Unique([institution_id, code])


class Doctor(Table, tablename="booking_doctor"):
    id = Serial(primary_key=True)
    institution_id = ForeignKey(Institution, null=False)
    department_id = ForeignKey(Department, null=False, index=True)
    code = Varchar(length=64)
    name = Varchar(length=50)
    title = Varchar(length=32)  # a Title: decides the registration fee
    specialty = Text(default="")
    updated_at = Timestamptz()

    doctor_code_once = Unique([institution_id, code])


class RegistrationFee(Table, tablename="booking_registration_fee"):
    """What registering with a doctor of a title costs at an institution (挂号费 + 诊察费)."""

    id = Serial(primary_key=True)
    institution_id = ForeignKey(Institution, null=False)
    title = Varchar(length=32)
    fee_fen = BigInt()
    item_code = Varchar(length=64)  # the fee's item on the bill, as the hospital's price list has it
    item_name = Varchar(length=100)
    category = Varchar(length=1)  # insurance category A / B / C
    updated_at = Timestamptz()

    fee_once_per_title = Unique([institution_id, title])
    fee_not_negative = Check("fee_fen >= 0 AND category IN ('A', 'B', 'C')")


class ClinicSession(Table, tablename="booking_session"):
    """A doctor's half day (or evening): its places, and how many are taken."""

    id = Serial(primary_key=True)
    institution_id = ForeignKey(Institution, null=False)
    department_id = ForeignKey(Department, null=False)
    doctor_id = ForeignKey(Doctor, null=False)
    code = Varchar(length=64)
    day = Date()
    period = Varchar(length=16)
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    capacity = Integer()
    booked = Integer(default=0)  # places held or taken: HOLDING appointments, waitlist offers included
    numbered = Integer(default=0)  # queue numbers given out so far (unnumbered sessions)
    slot_minutes = Integer(null=True, default=None)  # numbered time slots: slot n starts (n-1) * this in
    state = Varchar(length=16)
    cancel_reason = Text(null=True, default=None)
    updated_at = Timestamptz()

    session_code_once = Unique([institution_id, code])
    known_state = one_of("state", SessionState)
    known_period = one_of("period", Period)
    places_counted = Check("booked BETWEEN 0 AND capacity AND capacity BETWEEN 0 AND 10000")
    slots_fit = Check("slot_minutes IS NULL OR slot_minutes BETWEEN 1 AND 720")
    ends_after_start = Check("ends_at > starts_at")


class Appointment(Table, tablename="appointment"):
    id = UUID(primary_key=True)
    session_id = ForeignKey(ClinicSession, null=False, index=True)
    institution_id = ForeignKey(Institution, null=False)
    doctor_id = ForeignKey(Doctor, null=False)
    day = Date()
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    user_id = Integer()  # who booked
    state = Varchar(length=16)
    slot = Integer(null=True, default=None)
    queue_no = Integer(null=True, default=None)  # given when paid
    fee_fen = BigInt()
    bill_id = ForeignKey(Bill, null=False, unique=True)
    waitlist_id = Integer(null=True, default=None)  # the waitlist entry this place was offered to
    expires_at = Timestamptz()  # an unpaid hold ends then (its bill's expiry)
    created_at = Timestamptz()
    confirmed_at = Timestamptz(null=True, default=None)
    checked_in_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)
    ended_reason = Text(null=True, default=None)
    reminded_at = Timestamptz(null=True, default=None)
    updated_at = Timestamptz()

    known_state = one_of("state", AppointmentState)
    # In the migration, partial unique indexes: one ACTIVE appointment per (insured, doctor, day)
    # and one HOLDING appointment per (session, slot).


class WaitlistEntry(Table, tablename="booking_waitlist"):
    id = Serial(primary_key=True)  # the order of the line
    session_id = ForeignKey(ClinicSession, null=False)
    insured_id = ForeignKey(InsuredPerson, null=False, index=True)
    user_id = Integer()
    state = Varchar(length=16)
    appointment_id = UUID(null=True, default=None)  # the place offered
    created_at = Timestamptz()
    offered_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)

    known_state = one_of("state", WaitlistState)
    # In the migration: one WAITING or OFFERED entry per (session, insured); the line's index.
