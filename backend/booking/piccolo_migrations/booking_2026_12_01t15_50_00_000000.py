from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class ClinicSession(Table, tablename="booking_session"):
    pass


ID = "2026-12-01T15:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "the sessions holding places, indexed: the audit reads those, not the whole catalogue"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="booking", description=DESCRIPTION)

    async def booked_sessions():
        await ClinicSession.raw("CREATE INDEX booking_session_booked ON booking_session (id) WHERE booked > 0")

    manager.add_raw(booked_sessions)
    return manager
