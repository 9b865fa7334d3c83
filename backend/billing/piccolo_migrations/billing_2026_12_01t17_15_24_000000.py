from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class Bill(Table, tablename="bill"):
    pass


ID = "2026-12-01T17:15:24:000000"
VERSION = "1.38.0"
DESCRIPTION = "a bill's parts include family mutual aid"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def parts_with_family_aid():
        # Piccolo does not alter a check's condition.
        await Bill.raw(
            "ALTER TABLE bill DROP CONSTRAINT parts_sum_to_total, ADD CONSTRAINT parts_sum_to_total "
            "CHECK (fund_fen IS NULL OR fund_fen + personal_account_fen + family_account_fen + cash_fen "
            "= total_fen)"
        )

    manager.add_raw(parts_with_family_aid)

    return manager
