from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class FamilyLink(Table, tablename="family_link"):
    pass


ID = "2026-12-01T17:34:55:000000"
VERSION = "1.38.0"
DESCRIPTION = "the versions of links made before links were versioned"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="family", description=DESCRIPTION)

    async def versions_so_far():
        # Each grant change so far is one version, in the order they were made.
        await FamilyLink.raw(
            "UPDATE family_grant_change g SET version = n.version FROM ("
            "SELECT id, row_number() OVER (PARTITION BY link_id ORDER BY changed_at, id) AS version "
            "FROM family_grant_change) n WHERE n.id = g.id"
        )
        await FamilyLink.raw(
            "UPDATE family_link l SET version = coalesce("
            "(SELECT max(version) FROM family_grant_change g WHERE g.link_id = l.id), 1)"
        )

    manager.add_raw(versions_so_far)

    return manager
