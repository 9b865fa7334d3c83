from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-22T08:42:18:000000"
VERSION = "1.38.0"
DESCRIPTION = "partial unique bindings"


class RawSQL(Table, tablename="ecert_binding"):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ecert", description=DESCRIPTION)

    async def run():
        # One live binding per user, and one per identity and channel; history rows do not count.
        await RawSQL.raw(
            "CREATE UNIQUE INDEX ecert_binding_live_user ON ecert_binding (user_id) "
            "WHERE unbound_at IS NULL"
        )
        await RawSQL.raw(
            "CREATE UNIQUE INDEX ecert_binding_live_identity ON ecert_binding (insured_id, channel) "
            "WHERE unbound_at IS NULL"
        )

    manager.add_raw(run)
    return manager
