from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.constraints import Check

ID = "2026-12-01T20:06:03:522563"
VERSION = "1.38.0"
DESCRIPTION = "a balance on the row exactly for kept kinds"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="ledger", description=DESCRIPTION
    )

    manager.add_constraint(
        table_class_name="Account",
        tablename="ledger_account",
        constraint_name="balance_kept_by_kind",
        constraint_class=Check,
        params={
            "condition": "(kind IN ('personal_account', 'credit_debt')) = (balance_fen IS NOT NULL)"
        },
        schema=None,
    )

    return manager
