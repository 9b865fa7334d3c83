from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class FamilyLink(Table, tablename="family_link"):
    pass


ID = "2026-12-01T17:15:34:000000"
VERSION = "1.38.0"
DESCRIPTION = "the grants of links made before grants were recorded"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="family", description=DESCRIPTION)

    async def grants_so_far():
        # What such a link grants now, from when it was made.
        await FamilyLink.raw(
            "INSERT INTO family_grant_change (link_id, grant_manage, grant_pay, credit_cap_fen, changed_at, "
            "changed_by_user_id) SELECT id, grant_manage, grant_pay, credit_cap_fen, created_at, holder_user_id "
            "FROM family_link"
        )

    manager.add_raw(grants_so_far)

    return manager
