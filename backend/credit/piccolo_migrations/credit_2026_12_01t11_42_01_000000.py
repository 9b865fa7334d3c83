from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class CreditLine(Table, tablename="credit_line"):
    pass


ID = "2026-12-01T11:42:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "one live credit line per person and product; drawdowns found by due date"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="credit", description=DESCRIPTION)

    async def one_live_line():
        await CreditLine.raw(
            "CREATE UNIQUE INDEX credit_line_live_once ON credit_line (insured_id, product_id) "
            "WHERE status IN ('APPLIED', 'ACTIVE', 'FROZEN')"
        )
        # The reminder run reads the disbursed drawdowns of a due date in batches by id.
        await CreditLine.raw(
            "CREATE INDEX credit_drawdown_due ON credit_drawdown (due_date, id) WHERE status = 'DISBURSED'"
        )

    manager.add_raw(one_live_line)
    return manager
