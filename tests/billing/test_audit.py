"""`medpay audit` recomputes the books and names what is wrong; each kind of damage is caught."""

from __future__ import annotations

import asyncio

import pytest

from backend.audit import full_audit
from backend.billing.tables import Bill, CashPayment, InsuredYearUsage
from backend.ledger import service as ledger
from backend.ledger.tables import Account, Entry
from tests.billing.factories import (
    paid_in_cash,
)
from tests.servers import medpay


async def paid_bills(client, sandbox_http, settings, run_worker):
    _, bill, _ = await paid_in_cash(client, sandbox_http, settings, run_worker)
    return bill


async def test_medpay_audit_reports_clean_books_and_exits_nonzero_naming_a_problem(
    client, sandbox_http, settings, run_worker
):
    await paid_bills(client, sandbox_http, settings, run_worker)
    env = {"DATABASE_URL": settings.database.url, "REDIS_URL": settings.redis.url}

    clean = await asyncio.to_thread(medpay, "audit", env=env)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("audit clean: ")
    assert "1 bills" in clean.stdout

    # A kept balance that its entries do not explain: a personal account holding a fen from nowhere.
    await Account.raw(
        "INSERT INTO ledger_account (code, kind, balance_fen, created_at) "
        "VALUES ('personal_account:999', 'personal_account', 1, now())"
    )
    damaged = await asyncio.to_thread(medpay, "audit", env=env)
    await Account.delete().where(Account.code == "personal_account:999")

    assert damaged.returncode == 1
    assert "account personal_account:999 holds 1 but its entries sum to 0" in damaged.stderr


async def test_shared_accounts_keep_no_balance_on_their_rows(client, sandbox_http, settings, run_worker):
    """A region's fund pool and a hospital's receivable are summed from their entries, never
    locked or updated by a payment; a figure on such a row is not read."""
    await paid_bills(client, sandbox_http, settings, run_worker)
    kinds = {"fund_pool", "hospital_receivable", "channel_clearing"}
    shared = await Account.select(Account.code, Account.balance_fen).where(Account.kind.is_in(list(kinds)))
    assert {row["code"].split(":")[0] for row in shared} == kinds
    assert all(row["balance_fen"] is None for row in shared)
    assert await ledger.balance("hospital_receivable:H33010001") == 73000

    # As a row opened by an older release would hold: the balance is still its entries' sum.
    await Account.update({Account.balance_fen: 5}).where(Account.kind == "hospital_receivable")
    assert await ledger.balance("hospital_receivable:H33010001") == 73000
    assert (await full_audit())[0] == []


@pytest.mark.parametrize(
    ("damage", "repair", "named"),
    [
        (
            lambda: Entry.update({Entry.amount_fen: Entry.amount_fen + 5}).where(Entry.id == 1),
            lambda: Entry.update({Entry.amount_fen: Entry.amount_fen - 5}).where(Entry.id == 1),
            "sums to 5",
        ),
        (
            lambda: Bill.update({Bill.refunded_fen: 100}, force=True),
            lambda: Bill.update({Bill.refunded_fen: 0}, force=True),
            "refunded_fen is 100",
        ),
        (
            lambda: CashPayment.update({CashPayment.state: "CLOSED"}, force=True),
            lambda: CashPayment.update({CashPayment.state: "PAID"}, force=True),
            "channel_clearing:wechat: the ledger holds",
        ),
        (
            lambda: InsuredYearUsage.update({InsuredYearUsage.fund_paid_fen: 1}, force=True),
            lambda: InsuredYearUsage.update({InsuredYearUsage.fund_paid_fen: 17823}, force=True),
            "usage says fund 1",
        ),
    ],
    ids=["journal", "refunds", "clearing", "usage"],
)
async def test_each_invariant_catches_its_damage(
    client, sandbox_http, settings, run_worker, damage, repair, named
):
    await paid_bills(client, sandbox_http, settings, run_worker)
    assert (await full_audit())[0] == []

    await damage()
    problems, _ = await full_audit()
    await repair()

    assert any(named in p for p in problems), problems
