from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class Account(Table, tablename="ledger_account"):
    pass


ID = "2026-12-01T20:06:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "shared accounts' balances are the sums of their entries"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    async def forget_shared_balances():
        await Account.raw(
            "UPDATE ledger_account SET balance_fen = NULL "
            "WHERE kind NOT IN ('personal_account', 'credit_debt')"
        )

    manager.add_raw(forget_shared_balances)

    return manager
