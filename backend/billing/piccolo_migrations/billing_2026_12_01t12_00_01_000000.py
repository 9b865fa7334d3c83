from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class CashPayment(Table, tablename="cash_payment"):
    pass


ID = "2026-12-01T12:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "one live cash part per bill: another may open after one failed"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    async def one_live_cash_part():
        # Every cash part so far went through a payment channel's clearing account.
        await CashPayment.raw("UPDATE cash_payment SET account = 'channel_clearing:' || method")
        # One live (open or paid) cash part per bill; failed and closed ones stay as history.
        await CashPayment.raw(
            "CREATE UNIQUE INDEX cash_payment_live_once ON cash_payment (bill_id) "
            "WHERE state IN ('CREATED', 'PAID')"
        )

    manager.add_raw(one_live_cash_part)

    return manager
