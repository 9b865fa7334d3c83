from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt

ID = "2026-12-01T20:05:56:736194"
VERSION = "1.38.0"
DESCRIPTION = "shared accounts keep no balance on their row"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="ledger", description=DESCRIPTION
    )

    manager.alter_column(
        table_class_name="Account",
        tablename="ledger_account",
        column_name="balance_fen",
        db_column_name="balance_fen",
        params={"default": None, "null": True},
        old_params={"default": 0, "null": False},
        column_class=BigInt,
        old_column_class=BigInt,
        schema=None,
    )

    return manager
