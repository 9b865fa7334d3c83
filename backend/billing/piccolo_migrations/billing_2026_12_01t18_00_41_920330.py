from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Check
from piccolo.constraints import Unique

ID = "2026-12-01T18:00:41:920330"
VERSION = "1.38.0"
DESCRIPTION = "the counter: a cash part taken at the hospital's counter keeps its receipt and tender"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="billing", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="CashPayment",
        tablename="cash_payment",
        column_name="receipt_no",
        db_column_name="receipt_no",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": None,
            "null": True,
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

    manager.add_column(
        table_class_name="CashPayment",
        tablename="cash_payment",
        column_name="recorded_by",
        db_column_name="recorded_by",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": None,
            "null": True,
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

    manager.add_column(
        table_class_name="CashPayment",
        tablename="cash_payment",
        column_name="tender",
        db_column_name="tender",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 8,
            "default": None,
            "null": True,
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

    manager.add_constraint(
        table_class_name="CashPayment",
        tablename="cash_payment",
        constraint_name="known_tender",
        constraint_class=Check,
        params={"condition": "tender IS NULL OR tender IN ('cash', 'card')"},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="CashPayment",
        tablename="cash_payment",
        constraint_name="receipt_once",
        constraint_class=Unique,
        params={"columns": ["merchant_id", "receipt_no"], "nulls_distinct": True},
        schema=None,
    )

    return manager
