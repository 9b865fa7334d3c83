import os

from piccolo.conf.apps import AppConfig

from backend.ecert.tables import (
    EcertBinding,
    EcertDecode,
    FaceAssertionUse,
    InsuredPerson,
    QrCode,
    Visit,
)

APP_CONFIG = AppConfig(
    app_name="ecert",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[InsuredPerson, EcertBinding, QrCode, Visit, EcertDecode, FaceAssertionUse],
    migration_dependencies=["backend.auth.piccolo_app", "backend.hospitals.piccolo_app"],
)
