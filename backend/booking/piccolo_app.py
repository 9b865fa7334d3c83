import os

from piccolo.conf.apps import AppConfig

from backend.booking.tables import (
    Appointment,
    ClinicSession,
    Department,
    Doctor,
    RegistrationFee,
    WaitlistEntry,
)

APP_CONFIG = AppConfig(
    app_name="booking",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Department, Doctor, RegistrationFee, ClinicSession, Appointment, WaitlistEntry],
    migration_dependencies=["backend.billing.piccolo_app"],
)
