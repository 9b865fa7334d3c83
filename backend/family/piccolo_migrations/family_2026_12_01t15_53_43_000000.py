from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class FamilyLink(Table, tablename="family_link"):
    pass


ID = "2026-12-01T15:53:43:000000"
VERSION = "1.38.0"
DESCRIPTION = "one active link per holder and relative"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="family", description=DESCRIPTION)

    async def one_active_link():
        await FamilyLink.raw(
            "CREATE UNIQUE INDEX family_link_active_once ON family_link (holder_id, relative_id) "
            "WHERE state = 'ACTIVE'"
        )

    manager.add_raw(one_active_link)
    return manager
