from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.constraints import Check
from piccolo.table import Table


class Refund(Table, tablename="bill_refund"):
    pass

ID = "2026-12-01T10:00:37:163348"
VERSION = "1.38.0"
DESCRIPTION = "the states of cash payments and refunds, checked"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="billing", description=DESCRIPTION
    )

    async def retire_failed_refunds():
        # Until 2026-11-22 a refund that failed at the channel after it was accepted was
        # reversed and marked FAILED: nothing of it stands, which is REJECTED today.
        await Refund.raw(
            "UPDATE bill_refund SET state = 'REJECTED' WHERE state = 'FAILED'"
        )

    manager.add_raw(retire_failed_refunds)

    manager.add_constraint(
        table_class_name="CashPayment",
        tablename="cash_payment",
        constraint_name="known_state",
        constraint_class=Check,
        params={"condition": "state IN ('CREATED', 'PAID', 'CLOSED', 'FAILED')"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Refund",
        tablename="bill_refund",
        constraint_name="known_state",
        constraint_class=Check,
        params={
            "condition": "state IN ('REQUESTED', 'PROCESSING', 'SUCCEEDED', 'REJECTED', 'ATTENTION')"
        },
        schema=None,
    )

    return manager
