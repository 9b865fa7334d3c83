import os

from piccolo.conf.apps import AppConfig

from backend.family.tables import FamilyGrantChange, FamilyInvitation, FamilyLink

APP_CONFIG = AppConfig(
    app_name="family",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[FamilyLink, FamilyInvitation, FamilyGrantChange],
    migration_dependencies=["backend.booking.piccolo_app"],
)
