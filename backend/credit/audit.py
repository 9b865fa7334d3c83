"""Credit's invariants: lines within their limits and equal to their open drawdowns, what each
drawdown owes from its movements, and the ledger's debt accounts against the drawdowns."""

from __future__ import annotations

from backend.credit.tables import CreditLine, Drawdown
from backend.ledger import service as ledger


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    for row in await CreditLine.raw(
        """
        SELECT l.id, l.status, l.limit_fen, l.used_fen, coalesce(sum(d.principal_fen), 0) AS open_fen
        FROM credit_line l
        LEFT JOIN credit_drawdown d ON d.line_id = l.id AND d.status IN ('RESERVED', 'DISBURSED')
        GROUP BY l.id
        HAVING l.used_fen > l.limit_fen OR l.used_fen < 0 OR l.used_fen <> coalesce(sum(d.principal_fen), 0)
        """
    ):
        problems.append(
            f"credit line {row['id']} ({row['status']}): uses {row['used_fen']} of {row['limit_fen']} fen, "
            f"its open drawdowns hold {row['open_fen']}"
        )
    for row in await Drawdown.raw(
        """
        SELECT d.id, d.status, d.amount_fen, d.principal_fen, d.interest_fen, d.repaid_fen, d.refunded_fen,
               d.repaying_fen,
               (SELECT coalesce(sum(amount_fen), 0) FROM credit_repayment r
                 WHERE r.drawdown_id = d.id AND r.status = 'POSTED') AS posted,
               (SELECT coalesce(sum(interest_fen), 0) FROM credit_repayment r
                 WHERE r.drawdown_id = d.id AND r.status = 'POSTED') AS interest,
               (SELECT coalesce(sum(amount_fen), 0) FROM credit_repayment r
                 WHERE r.drawdown_id = d.id AND r.status = 'AWAITING_PAYMENT') AS awaiting,
               (SELECT coalesce(sum(reduced_owed_fen), 0) FROM credit_refund f WHERE f.drawdown_id = d.id)
                 AS reduced
        FROM credit_drawdown d
        """
    ):
        owed = row["amount_fen"] + row["interest_fen"] - row["repaid_fen"] - row["refunded_fen"]
        expected = {
            "RESERVED": row["amount_fen"],
            "FAILED": 0,
        }.get(row["status"], owed)
        if row["principal_fen"] != expected or (row["status"] == "REPAID" and row["principal_fen"] != 0):
            problems.append(
                f"drawdown {row['id']} ({row['status']}): owes {row['principal_fen']} fen, "
                f"its movements say {expected}"
            )
        if (row["repaid_fen"], row["interest_fen"], row["refunded_fen"], row["repaying_fen"]) != (
            row["posted"],
            row["interest"],
            row["reduced"],
            row["awaiting"],
        ):
            problems.append(
                f"drawdown {row['id']}: repaid {row['repaid_fen']} (interest {row['interest_fen']}), "
                "refunded "
                f"{row['refunded_fen']}, repaying {row['repaying_fen']}; its repayments and refunds say "
                f"{row['posted']} ({row['interest']}), {row['reduced']}, {row['awaiting']}"
            )
    problems += await _debts()
    counts = {"credit lines": await CreditLine.count(), "drawdowns": await Drawdown.count()}
    return problems, counts


async def _debts() -> list[str]:
    """Each line's debt account holds minus what its disbursed drawdowns owe; each bank's lent
    account what all of its lines owe."""
    owed_by_line: dict[str, int] = {}
    owed_by_bank: dict[str, int] = {}
    for row in await Drawdown.raw(
        """
        SELECT l.id AS line_id, b.code AS bank, coalesce(sum(d.principal_fen), 0) AS owed
        FROM credit_line l JOIN bank b ON b.id = l.bank_id
        JOIN credit_drawdown d ON d.line_id = l.id AND d.status IN ('DISBURSED', 'REPAID')
        GROUP BY l.id, b.code
        """
    ):
        owed_by_line[ledger.credit_debt(str(row["line_id"]))] = int(row["owed"])
        code = ledger.bank_lent(row["bank"])
        owed_by_bank[code] = owed_by_bank.get(code, 0) + int(row["owed"])
    problems = []
    debts = await ledger.balances("credit_debt")
    for code in sorted(set(debts) | set(owed_by_line)):
        held, owed = -debts.get(code, 0), owed_by_line.get(code, 0)
        if held != owed:
            problems.append(f"{code}: the ledger says {held} fen owed, the drawdowns {owed}")
    lent = await ledger.balances("bank_lent")
    for code in sorted(set(lent) | set(owed_by_bank)):
        held, owed = lent.get(code, 0), owed_by_bank.get(code, 0)
        if held != owed:
            problems.append(f"{code}: the ledger says {held} fen lent, the drawdowns {owed}")
    return problems
