"""Credit as billing's "credit" cash method: reserved on the line as the bill settles, disbursed by
the bank, checked with its query, refunded through it. Registered when this module is loaded (the
web app's routes and the workers' jobs load it)."""

from backend.billing import methods
from backend.credit import drawdowns, refunds

CREDIT = methods.CashMethod(
    reserve=drawdowns.reserve,
    open=drawdowns.open_collection,
    check=drawdowns.check,
    refund=refunds.refund,
    query_refund=refunds.query_refund,
)
methods.register("credit", CREDIT)
