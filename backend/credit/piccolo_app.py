import os

from piccolo.conf.apps import AppConfig

from backend.credit.tables import Bank, BankKey, CreditLine, CreditProduct, CreditRefund, Drawdown, Repayment

APP_CONFIG = AppConfig(
    app_name="credit",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Bank, BankKey, CreditProduct, CreditLine, Drawdown, Repayment, CreditRefund],
    migration_dependencies=["backend.billing.piccolo_app"],
)
