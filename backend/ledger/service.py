"""Posting to the double-entry ledger, and checking it.

Every money movement is one journal whose entries sum to zero, posted inside the transaction
of the change it belongs to, in one statement. A person's and a line's accounts keep their
balance on their row, updated under its lock by each posting (several locked in one order:
personal accounts, then by code), which must always equal the sum of their entries, and a
personal account's never below zero; `audit` checks that. Shared accounts (fund pools,
receivables, clearing) are never locked or updated: their balance is the sum of their entries.

Sign convention: an account's balance is what it holds. A payment moves value from the payers
(fund pool, personal account, channel clearing, a counter's cash: balances fall) to the hospital's receivable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import asyncpg

from backend.ledger.tables import KEPT_KINDS, Account, Entry, Journal
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
    """Post journals (kind, reference, lines) of one change inside the caller's transaction; a
    journal's id, or None where every line is 0.

    Only kept accounts (`KEPT_KINDS`: personal accounts, credit debts) are locked, each by the
    update of its balance; where a change touches more than one, they are locked first in the one
    order (personal accounts, then by code), so two changes never wait on each other in a cycle.
    Shared accounts are never locked: their entries are appended and their balances summed."""
    netted = []
    for kind, reference, lines in journals:
        amounts: dict[str, int] = {}
        for code, amount in lines:
            amounts[code] = amounts.get(code, 0) + amount
        amounts = {code: amount for code, amount in amounts.items() if amount}
        if sum(amounts.values()) != 0:
            raise ValueError(f"journal {kind} {reference} does not balance: {amounts}")
        netted.append((kind, reference, amounts))
    kept = sorted({code for _, _, amounts in netted for code in amounts if is_kept(code)})
    if len(kept) > 1:
        await Account.raw(
            "SELECT id FROM ledger_account WHERE code = ANY({}::text[]) "
            "ORDER BY kind <> 'personal_account', code FOR UPDATE",
            kept,
        )
    return [await _post_one(kind, reference, amounts) for kind, reference, amounts in netted]


def is_kept(code: str) -> bool:
    """Whether the account's balance is kept on its row (see `KEPT_KINDS`)."""
    return code.split(":", 1)[0] in KEPT_KINDS


# One round trip: shared accounts opened where new, the journal and its entries inserted, kept
# balances updated. The journal is written only if every account is there: a personal account
# is never opened here (`open_personal_accounts` does it with its opening balance); a line's debt
# account (kept: the statement that inserts a row cannot update it) or a shared one that is
# missing, or opened by a concurrent change this statement's snapshot cannot see, is opened by
# `_open` and the posting retried.
_POST = """
WITH line AS (
    SELECT code, amount FROM unnest({}::text[], {}::bigint[]) AS line(code, amount)
), opened AS (
    INSERT INTO ledger_account (code, kind, balance_fen, created_at)
    SELECT code, split_part(code, ':', 1), NULL, now() FROM line
    WHERE split_part(code, ':', 1) <> ALL({}::text[])
      AND NOT EXISTS (SELECT FROM ledger_account a WHERE a.code = line.code)
    ON CONFLICT (code) DO NOTHING
    RETURNING id, code
), account AS (
    SELECT id, code FROM ledger_account WHERE code IN (SELECT code FROM line)
    UNION ALL SELECT id, code FROM opened
), journal AS (
    INSERT INTO ledger_journal (kind, reference, correlation_id, created_at)
    SELECT {}, {}, {}, {} WHERE (SELECT count(*) FROM account) = (SELECT count(*) FROM line)
    RETURNING id
), entry AS (
    INSERT INTO ledger_entry (journal_id, account_id, amount_fen)
    SELECT journal.id, account.id, line.amount FROM journal, line JOIN account USING (code)
    RETURNING account_id, amount_fen
), kept AS (
    UPDATE ledger_account a SET balance_fen = a.balance_fen + entry.amount_fen
    FROM entry WHERE a.id = entry.account_id AND a.kind = ANY({}::text[])
)
SELECT (SELECT id FROM journal) AS journal_id
"""


async def _post_one(kind: str, reference: str, amounts: dict[str, int]) -> int | None:
    if not amounts:
        return None
    for attempt in range(2):
        try:
            rows = await Journal.raw(
                _POST,
                list(amounts),
                list(amounts.values()),
                list(KEPT_KINDS),
                kind,
                reference,
                current_correlation_id(),
                datetime.now(UTC),
                list(KEPT_KINDS),
            )
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyPosted(f"{kind} {reference}") from exc
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name != "personal_account_not_negative":
                raise
            raise Conflict(
                "the personal account does not hold enough for this payment",
                code="PERSONAL_ACCOUNT_INSUFFICIENT",
            ) from exc
        if rows[0]["journal_id"] is not None:
            return int(rows[0]["journal_id"])
        if attempt == 0:
            await _open(list(amounts))
    raise ValueError(f"no such accounts among {sorted(amounts)}")


async def _open(codes: list[str]) -> None:
    """Open the accounts that are missing (never a personal account), waiting for any being
    opened concurrently: a kept one at 0, a shared one with no balance on its row."""
    await Account.raw(
        """
        INSERT INTO ledger_account (code, kind, balance_fen, created_at)
        SELECT code, split_part(code, ':', 1),
               CASE WHEN split_part(code, ':', 1) = ANY({}::text[]) THEN 0 END, now()
        FROM unnest({}::text[]) AS code
        ON CONFLICT (code) DO NOTHING
        """,
        list(KEPT_KINDS),
        [code for code in codes if not code.startswith(PERSONAL_ACCOUNT + ":")],
    )


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


async def locked_personal_accounts(people: list[tuple[int, str, int]]) -> dict[int, int]:
    """People's personal account balances by insured id, each (insured id, region, the balance
    the platform reported), locked together until the caller's transaction ends; opened first
    where missing (one round trip when they are all open, as they are after a first payment)."""
    if not people:
        return {}
    codes = {personal_account(insured_id): insured_id for insured_id, _, _ in people}
    # Locked only if every one is open: locking some, then waiting to open another, could wait in
    # a cycle with a payment opening that one and waiting for these.
    locked = await locked_balances(list(codes), only_all=True)
    if not locked:
        await open_personal_accounts(people)  # every row first, in code order, then the locks
        locked = await locked_balances(list(codes))
    return {codes[code]: fen for code, fen in locked.items()}


async def locked_balances(codes: list[str], *, only_all: bool = False) -> dict[str, int]:
    """Kept accounts' balances, locked together in the ledger's order until the caller's
    transaction ends (an account that was never opened is left out); with `only_all`, none locked
    (and nothing answered) unless every one is open."""
    rows = await Account.raw(
        """
        SELECT code, balance_fen FROM ledger_account WHERE code = ANY({}::text[])
          AND (NOT {} OR (SELECT count(*) FROM ledger_account WHERE code = ANY({}::text[])) = {})
        ORDER BY kind <> 'personal_account', code FOR UPDATE
        """,
        codes,
        only_all,
        codes,
        len(codes),
    )
    return {row["code"]: int(row["balance_fen"]) for row in rows}


# A kept account's balance is on its row; a shared one's is the sum of its entries.
_BALANCE = """
    SELECT a.code, CASE WHEN a.kind = ANY({}::text[]) THEN a.balance_fen
        ELSE (SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e WHERE e.account_id = a.id)
    END AS balance
    FROM ledger_account a
"""


async def balance(code: str, default: int = 0) -> int:
    """The account's balance; `default` when it was never opened."""
    rows = await Account.raw(_BALANCE + "WHERE a.code = {}", list(KEPT_KINDS), code)
    return int(rows[0]["balance"]) if rows else default


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
    rows = await Account.raw(_BALANCE + "WHERE a.kind = {}", list(KEPT_KINDS), account_kind)
    return {row["code"]: int(row["balance"]) for row in rows}


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
        WHERE a.kind = ANY({}::text[]) AND a.balance_fen IS DISTINCT FROM coalesce(s.total, 0)
        ORDER BY a.code
        """,
        list(KEPT_KINDS),
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
