"""Posting to the double-entry ledger, and checking it.

Every money movement is one journal whose entries sum to zero, posted inside the transaction
of the change it belongs to. Balances are kept on the accounts (locked in one order: personal
accounts, then the others, by code) and must always equal the sum of their entries; `audit`
checks that.

Sign convention: an account's balance is what it holds. A payment moves value from the payers
(fund pool, personal account, channel clearing, a counter's cash: balances fall) to the hospital's receivable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import asyncpg

from backend.ledger.tables import Account, Entry, Journal
from backend.platform.errors import Conflict
from backend.platform.logging import current_correlation_id

PERSONAL_ACCOUNT = "personal_account"


def personal_account(insured_id: int) -> str:
    return f"{PERSONAL_ACCOUNT}:{insured_id}"


def personal_account_funding(region_code: str) -> str:
    """Where personal accounts are funded from: the region's contributions."""
    return f"personal_account_funding:{region_code}"


def fund_pool(region_code: str, insurance_type: str) -> str:
    return f"fund_pool:{region_code}:{insurance_type}"


def hospital_receivable(institution_code: str) -> str:
    return f"hospital_receivable:{institution_code}"


def channel_clearing(method: str) -> str:
    return f"channel_clearing:{method}"


def counter_cash(institution_code: str) -> str:
    """The hospital's own cash desk: what its cashiers took for bills' cash parts, less what they
    handed back for refunds."""
    return f"counter_cash:{institution_code}"


def bank_credit(bank_code: str) -> str:
    """What a bank paid hospitals for bills drawn on its lines, less the cash refunded to it."""
    return f"bank_credit:{bank_code}"


def bank_lent(bank_code: str) -> str:
    """What the bank's borrowers owe it through us (its side of every line's debt)."""
    return f"bank_lent:{bank_code}"


def credit_debt(line_id: str) -> str:
    """What the holder of a credit line owes on it, as a negative balance."""
    return f"credit_debt:{line_id}"


class AlreadyPosted(Exception):
    """This (kind, reference) was posted before: the caller is repeating itself."""


async def post(kind: str, reference: str, lines: Iterable[tuple[str, int]]) -> int | None:
    """Post one journal inside the caller's transaction; None when every line is zero."""
    return (await post_together([(kind, reference, lines)]))[0]


async def post_together(journals: Sequence[tuple[str, str, Iterable[tuple[str, int]]]]) -> list[int | None]:
    """Post journals (kind, reference, lines) of one change inside the caller's transaction, every
    account they touch locked first in the one order (so a change posting two journals never
    locks a personal account after a shared one); a journal's id, or None where every line is 0."""
    netted = []
    for kind, reference, lines in journals:
        amounts: dict[str, int] = {}
        for code, amount in lines:
            amounts[code] = amounts.get(code, 0) + amount
        amounts = {code: amount for code, amount in amounts.items() if amount}
        if sum(amounts.values()) != 0:
            raise ValueError(f"journal {kind} {reference} does not balance: {amounts}")
        netted.append((kind, reference, amounts))
    codes = sorted({code for _, _, amounts in netted for code in amounts})
    accounts = await _lock_accounts(codes) if codes else {}
    return [await _post_locked(kind, reference, amounts, accounts) for kind, reference, amounts in netted]


async def _post_locked(
    kind: str, reference: str, amounts: dict[str, int], accounts: dict[str, int]
) -> int | None:
    if not amounts:
        return None
    try:
        journal = await Journal.insert(
            Journal(
                kind=kind,
                reference=reference,
                correlation_id=current_correlation_id(),
                created_at=datetime.now(UTC),
            )
        ).returning(Journal.id)
    except asyncpg.UniqueViolationError as exc:
        raise AlreadyPosted(f"{kind} {reference}") from exc
    journal_id = journal[0]["id"]
    await Entry.insert(
        *(
            Entry(journal_id=journal_id, account_id=accounts[code], amount_fen=a)
            for code, a in amounts.items()
        )
    )
    try:
        await Account.raw(
            """
            UPDATE ledger_account SET balance_fen = balance_fen + v.amount
            FROM unnest({}::int[], {}::bigint[]) AS v(id, amount)
            WHERE ledger_account.id = v.id
            """,
            [accounts[code] for code in amounts],
            list(amounts.values()),
        )
    except asyncpg.CheckViolationError as exc:
        raise Conflict(
            "the personal account does not hold enough for this payment",
            code="PERSONAL_ACCOUNT_INSUFFICIENT",
        ) from exc
    return int(journal_id)


async def _lock_accounts(codes: list[str]) -> dict[str, int]:
    """Lock the accounts in code order, opening any missing (except personal accounts)."""
    missing = [code for code in codes if not code.startswith(PERSONAL_ACCOUNT + ":")]
    if missing:
        await Account.raw(
            """
            INSERT INTO ledger_account (code, kind, balance_fen, created_at)
            SELECT code, split_part(code, ':', 1), 0, now() FROM unnest({}::text[]) AS code
            ON CONFLICT (code) DO NOTHING
            """,
            missing,
        )
    # Personal accounts first, then the shared ones, each by code: the order every payment,
    # reversal and refund takes (after the bill and the year's usage), so none waits in a cycle.
    # Raw SQL: that order is an expression, which Piccolo's order_by does not take.
    rows = await Account.raw(
        "SELECT id, code FROM ledger_account WHERE code = ANY({}::text[]) "
        "ORDER BY kind <> 'personal_account', code FOR UPDATE",
        codes,
    )
    found = {row["code"]: row["id"] for row in rows}
    if unknown := set(codes) - set(found):
        raise ValueError(f"no such accounts: {sorted(unknown)}")
    return found


async def open_personal_accounts(people: list[tuple[int, str, int]]) -> None:
    """Open people's accounts, each (insured id, region, the balance the platform reported), once,
    in the caller's transaction: every row first, in code order, then the openings' journals
    together, so two payments opening overlapping accounts never wait on each other in a cycle."""
    opening = {personal_account(insured_id): (region, fen) for insured_id, region, fen in people}
    created = await Account.raw(
        """
        INSERT INTO ledger_account (code, kind, balance_fen, created_at)
        SELECT code, {}, 0, now() FROM unnest({}::text[]) AS code ORDER BY code
        ON CONFLICT (code) DO NOTHING RETURNING code
        """,
        PERSONAL_ACCOUNT,
        sorted(opening),
    )
    await post_together(
        [
            (
                "personal_account.opened",
                row["code"],
                [
                    (row["code"], opening[row["code"]][1]),
                    (personal_account_funding(opening[row["code"]][0]), -opening[row["code"]][1]),
                ],
            )
            for row in created
        ]
    )


async def locked_balance(code: str) -> int:
    """The account's balance, locked until the caller's transaction ends (0 if it has none)."""
    rows = await Account.select(Account.balance_fen).where(Account.code == code).lock_rows()
    return int(rows[0]["balance_fen"]) if rows else 0


async def locked_balances(codes: list[str]) -> dict[str, int]:
    """The accounts' balances, locked together in the ledger's order until the caller's
    transaction ends (an account that was never opened is left out)."""
    rows = await Account.raw(
        "SELECT code, balance_fen FROM ledger_account WHERE code = ANY({}::text[]) "
        "ORDER BY kind <> 'personal_account', code FOR UPDATE",
        codes,
    )
    return {row["code"]: int(row["balance_fen"]) for row in rows}


async def balance(code: str, default: int = 0) -> int:
    """The account's balance; `default` when it was never opened."""
    rows = await Account.select(Account.balance_fen).where(Account.code == code)
    return int(rows[0]["balance_fen"]) if rows else default


async def moved_by_reference(account_kind: str) -> dict[str, int]:
    """For other domains' audits: what each reference's journals moved on accounts of a kind."""
    rows = await Journal.raw(
        """
        SELECT j.reference, sum(e.amount_fen) AS amount
        FROM ledger_journal j JOIN ledger_entry e ON e.journal_id = j.id
        JOIN ledger_account a ON a.id = e.account_id
        WHERE a.kind = {} GROUP BY j.reference
        """,
        account_kind,
    )
    return {row["reference"]: int(row["amount"]) for row in rows}


async def balances(account_kind: str) -> dict[str, int]:
    """Every account of a kind, by code, with its balance."""
    rows = await Account.select(Account.code, Account.balance_fen).where(Account.kind == account_kind)
    return {row["code"]: int(row["balance_fen"]) for row in rows}


async def audit() -> tuple[list[str], dict[str, int]]:
    """The ledger's own invariants: (problems, counts)."""
    problems = []
    for row in await Journal.raw(
        """
        SELECT j.id, j.kind, j.reference, coalesce(sum(e.amount_fen), 0) AS total, count(e.id) AS lines
        FROM ledger_journal j LEFT JOIN ledger_entry e ON e.journal_id = j.id
        GROUP BY j.id HAVING coalesce(sum(e.amount_fen), 0) <> 0 OR count(e.id) < 2
        ORDER BY j.id
        """
    ):
        problems.append(
            f"journal {row['id']} ({row['kind']} {row['reference']}) sums to {row['total']} "
            f"over {row['lines']} entries"
        )
    for row in await Account.raw(
        """
        SELECT a.code, a.balance_fen, coalesce(s.total, 0) AS total
        FROM ledger_account a
        LEFT JOIN (SELECT account_id, sum(amount_fen) AS total FROM ledger_entry GROUP BY account_id) s
          ON s.account_id = a.id
        WHERE a.balance_fen <> coalesce(s.total, 0)
        ORDER BY a.code
        """
    ):
        problems.append(
            f"account {row['code']} holds {row['balance_fen']} but its entries sum to {row['total']}"
        )
    for row in await Account.raw(
        "SELECT code, balance_fen FROM ledger_account WHERE kind = {} AND balance_fen < 0 ORDER BY code",
        PERSONAL_ACCOUNT,
    ):
        problems.append(f"personal account {row['code']} is below zero: {row['balance_fen']}")
    counts = {
        "journals": await Journal.count(),
        "entries": await Entry.count(),
        "accounts": await Account.count(),
    }
    return problems, counts
