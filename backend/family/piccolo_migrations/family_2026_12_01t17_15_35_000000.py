from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class FamilyLink(Table, tablename="family_link"):
    pass


ID = "2026-12-01T17:15:35:000000"
VERSION = "1.38.0"
DESCRIPTION = "a newborn's link says so (linked_by NEWBORN)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="family", description=DESCRIPTION)

    async def newborns():
        # Piccolo does not alter a check's condition.
        await FamilyLink.raw(
            "ALTER TABLE family_link DROP CONSTRAINT known_linked_by, ADD CONSTRAINT known_linked_by "
            "CHECK (linked_by IN ('INVITATION', 'PROXY', 'NEWBORN'))"
        )

    manager.add_raw(newborns)

    return manager
