from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Unique

ID = "2026-11-22T09:45:48:530858"
VERSION = "1.38.0"
DESCRIPTION = "request keys of bills and refunds"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="billing", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="Bill",
        tablename="bill",
        column_name="request_key",
        db_column_name="request_key",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
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
        table_class_name="Refund",
        tablename="bill_refund",
        column_name="request_key",
        db_column_name="request_key",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 255,
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
        table_class_name="Bill",
        tablename="bill",
        constraint_name="created_once",
        constraint_class=Unique,
        params={"columns": ["created_by", "request_key"], "nulls_distinct": True},
        schema=None,
    )

    manager.add_constraint(
        table_class_name="Refund",
        tablename="bill_refund",
        constraint_name="requested_once",
        constraint_class=Unique,
        params={
            "columns": ["requested_by", "request_key"],
            "nulls_distinct": True,
        },
        schema=None,
    )

    return manager
