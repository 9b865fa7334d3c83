from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table


class CashPayment(Table, tablename="cash_payment"):
    pass


ID = "2026-12-01T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "cash parts name their ledger account"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="billing", description=DESCRIPTION)

    manager.add_column(
        table_class_name="CashPayment",
        tablename="cash_payment",
        column_name="account",
        db_column_name="account",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 100,
            "default": "",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.drop_constraint(
        table_class_name="CashPayment",
        tablename="cash_payment",
        constraint_name="cash_once_per_bill",
        schema=None,
    )

    return manager
