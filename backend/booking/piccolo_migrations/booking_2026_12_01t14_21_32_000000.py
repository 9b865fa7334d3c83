from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class Appointment(Table, tablename="appointment"):
    pass


ID = "2026-12-01T14:21:32:000000"
VERSION = "1.38.0"
DESCRIPTION = "one active appointment per patient, doctor and day; one holder per slot; the lines"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="booking", description=DESCRIPTION)

    async def indexes():
        await Appointment.raw(
            "CREATE UNIQUE INDEX appointment_once_per_doctor_day ON appointment (insured_id, doctor_id, day) "
            "WHERE state IN ('HELD', 'CONFIRMED', 'CHECKED_IN')"
        )
        await Appointment.raw(
            "CREATE UNIQUE INDEX appointment_slot_once ON appointment (session_id, slot) "
            "WHERE slot IS NOT NULL AND state IN ('HELD', 'CONFIRMED', 'CHECKED_IN', 'NO_SHOW')"
        )
        # The evening reminder run and the no-show job read confirmed appointments by day.
        await Appointment.raw(
            "CREATE INDEX appointment_confirmed_by_day ON appointment (day, id) WHERE state = 'CONFIRMED'"
        )
        await Appointment.raw(
            "CREATE UNIQUE INDEX booking_waitlist_once ON booking_waitlist (session_id, insured_id) "
            "WHERE state IN ('WAITING', 'OFFERED')"
        )
        await Appointment.raw(
            "CREATE INDEX booking_waitlist_line ON booking_waitlist (session_id, id) WHERE state = 'WAITING'"
        )
        # Browsing: a doctor's sessions by time, a department's doctors working on a day.
        await Appointment.raw("CREATE INDEX booking_session_by_doctor ON booking_session (doctor_id, starts_at)")
        await Appointment.raw("CREATE INDEX booking_session_by_department ON booking_session (department_id, day)")
        await Appointment.raw(
            "CREATE INDEX booking_session_cancelled ON booking_session (id) WHERE state = 'CANCELLED'"
        )

    manager.add_raw(indexes)
    return manager
