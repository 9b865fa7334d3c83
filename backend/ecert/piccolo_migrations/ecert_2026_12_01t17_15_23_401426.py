from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete
from piccolo.columns.base import OnUpdate
from piccolo.columns.column_types import ForeignKey
from piccolo.columns.column_types import Integer
from piccolo.columns.column_types import Serial
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Check
from piccolo.table import Table


class InsuredPerson(Table, tablename="insured_person", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


class QrCode(Table, tablename="ecert_qr_code"):
    pass


class User(Table, tablename="app_user", schema=None):
    id = Serial(
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


ID = "2026-12-01T17:15:23:401426"
VERSION = "1.38.0"
DESCRIPTION = "a QR code names its person, and is issued under a binding or a family link"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="ecert", description=DESCRIPTION
    )

    async def drop_live_codes():
        # Codes live a minute and name no person yet: those on screen now are dropped (raw steps
        # run first), and the mini-program fetches the next one within `refresh_in`.
        await QrCode.raw("DELETE FROM ecert_qr_code")

    manager.add_raw(drop_live_codes)

    manager.add_column(
        table_class_name="QrCode",
        tablename="ecert_qr_code",
        column_name="insured_id",
        db_column_name="insured_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": InsuredPerson,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="QrCode",
        tablename="ecert_qr_code",
        column_name="issued_by_user_id",
        db_column_name="issued_by_user_id",
        column_class_name="ForeignKey",
        column_class=ForeignKey,
        params={
            "references": User,
            "on_delete": OnDelete.cascade,
            "on_update": OnUpdate.cascade,
            "target_column": None,
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

    manager.add_column(
        table_class_name="QrCode",
        tablename="ecert_qr_code",
        column_name="link_id",
        db_column_name="link_id",
        column_class_name="Integer",
        column_class=Integer,
        params={
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

    manager.alter_column(
        table_class_name="QrCode",
        tablename="ecert_qr_code",
        column_name="binding_id",
        db_column_name="binding_id",
        params={"null": True},
        old_params={"null": False},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )

    manager.add_constraint(
        table_class_name="QrCode",
        tablename="ecert_qr_code",
        constraint_name="issued_under_one",
        constraint_class=Check,
        params={"condition": "(binding_id IS NULL) <> (link_id IS NULL)"},
        schema=None,
    )

    return manager
