from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.constraints import Unique

ID = "2026-12-01T17:34:56:000000"
VERSION = "1.38.0"
DESCRIPTION = "one grant row per version of a link"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="family", description=DESCRIPTION)

    manager.add_constraint(
        table_class_name="FamilyGrantChange",
        tablename="family_grant_change",
        constraint_name="one_row_per_version",
        constraint_class=Unique,
        params={"columns": ["link_id", "version"], "nulls_distinct": True},
        schema=None,
    )

    return manager
