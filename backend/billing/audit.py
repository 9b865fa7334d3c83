"""The bills' invariants against the ledger, the channels' orders and the year-to-date usage."""

from __future__ import annotations

from backend.billing.tables import Bill
from backend.ledger import service as ledger

# Bills settled: PAYING, PAID, PARTIALLY_REFUNDED, REFUNDED. Refunds standing in the ledger:
# PROCESSING, SUCCEEDED, ATTENTION; REQUESTED and REJECTED ones have posted nothing.


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    for row in await Bill.raw(
        """
        SELECT b.bill_no, b.state, b.total_fen, b.fund_fen, b.personal_account_fen, b.cash_fen
        FROM bill b
        WHERE b.state IN ('PAYING', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED')
          AND (b.fund_fen IS NULL OR b.fund_fen + b.personal_account_fen + b.cash_fen <> b.total_fen)
        """
    ):
        problems.append(f"bill {row['bill_no']} ({row['state']}): its parts do not sum to {row['total_fen']}")
    for row in await Bill.raw(
        """
        SELECT b.bill_no, b.state, b.cash_fen, c.state AS cash_state, c.amount_fen
        FROM bill b LEFT JOIN cash_payment c ON c.bill_id = b.id
        WHERE (b.state IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') AND b.cash_fen > 0
               AND (c.state IS DISTINCT FROM 'PAID' OR c.amount_fen <> b.cash_fen))
           OR (b.state = 'PAYING' AND c.state IS DISTINCT FROM 'CREATED')
           OR (b.state IN ('CLOSED', 'FAILED', 'CREATED') AND c.state IN ('PAID', 'CREATED'))
        """
    ):
        problems.append(
            f"bill {row['bill_no']} is {row['state']} but its cash payment is {row['cash_state']} "
            f"for {row['amount_fen']} fen (cash part {row['cash_fen']})"
        )
    for row in await Bill.raw(
        """
        WITH posted AS (
            SELECT j.reference, sum(e.amount_fen) AS receivable
            FROM ledger_journal j JOIN ledger_entry e ON e.journal_id = j.id
            JOIN ledger_account a ON a.id = e.account_id AND a.kind = 'hospital_receivable'
            GROUP BY j.reference
        ),
        accepted AS (
            SELECT bill_id, coalesce(sum(amount_fen), 0) AS amount,
                   coalesce(sum(p.receivable), 0) AS receivable
            FROM bill_refund r LEFT JOIN posted p ON p.reference = 'refund:' || r.id
            WHERE r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION') GROUP BY bill_id
        )
        SELECT b.bill_no, b.state, b.refunded_fen,
               coalesce(p.receivable, 0) + coalesce(a.receivable, 0) AS receivable,
               coalesce(a.amount, 0) AS refunds,
               CASE WHEN b.state = 'PAYING' THEN b.fund_fen + b.personal_account_fen
                    WHEN b.state IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED')
                    THEN b.total_fen - b.refunded_fen
                    ELSE 0 END AS expected
        FROM bill b
        LEFT JOIN posted p ON p.reference = 'bill:' || b.id
        LEFT JOIN accepted a ON a.bill_id = b.id
        """
    ):
        if row["receivable"] != row["expected"]:
            problems.append(
                f"bill {row['bill_no']} ({row['state']}): the hospital's receivable holds "
                f"{row['receivable']} fen for it, expected {row['expected']}"
            )
        if row["refunds"] != row["refunded_fen"]:
            problems.append(
                f"bill {row['bill_no']}: refunded_fen is {row['refunded_fen']} "
                f"but its refunds total {row['refunds']}"
            )
    for row in await Bill.raw(
        """
        WITH orders AS (
            SELECT method, sum(amount_fen) AS paid FROM cash_payment WHERE state = 'PAID' GROUP BY method
        ),
        refunded AS (
            SELECT b.cash_method AS method, sum(r.cash_fen) AS refunded
            FROM bill_refund r JOIN bill b ON b.id = r.bill_id
            WHERE r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION') AND r.cash_fen > 0
            GROUP BY b.cash_method
        ),
        clearing AS (
            SELECT split_part(code, ':', 2) AS method, balance_fen FROM ledger_account
            WHERE kind = 'channel_clearing'
        )
        SELECT coalesce(o.method, r.method, c.method) AS method,
               coalesce(o.paid, 0) - coalesce(r.refunded, 0) AS expected,
               -coalesce(c.balance_fen, 0) AS held
        FROM orders o FULL JOIN refunded r ON r.method = o.method
        FULL JOIN clearing c ON c.method = coalesce(o.method, r.method)
        """
    ):
        if row["held"] != row["expected"]:
            problems.append(
                f"channel clearing {row['method']}: the ledger holds {row['held']} fen collected, "
                f"the channel orders say {row['expected']}"
            )
    for row in await Bill.raw(
        """
        WITH used AS (
            SELECT b.insured_id, b.policy_year AS year,
                   sum(b.fund_fen) AS fund, sum(b.deductible_fen) AS deductible
            FROM bill b WHERE b.state IN ('PAYING', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') GROUP BY 1, 2
        ),
        given_back AS (
            SELECT b.insured_id, b.policy_year AS year,
                   sum(r.fund_fen) AS fund, sum(r.deductible_fen) AS deductible
            FROM bill_refund r JOIN bill b ON b.id = r.bill_id
            WHERE r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION') GROUP BY 1, 2
        )
        SELECT u.insured_id, u.year, u.fund_paid_fen, u.deductible_met_fen,
               coalesce(x.fund, 0) - coalesce(g.fund, 0) AS fund,
               coalesce(x.deductible, 0) - coalesce(g.deductible, 0) AS deductible
        FROM insured_year_usage u
        LEFT JOIN used x ON x.insured_id = u.insured_id AND x.year = u.year
        LEFT JOIN given_back g ON g.insured_id = u.insured_id AND g.year = u.year
        WHERE u.fund_paid_fen <> coalesce(x.fund, 0) - coalesce(g.fund, 0)
           OR u.deductible_met_fen <> coalesce(x.deductible, 0) - coalesce(g.deductible, 0)
        """
    ):
        problems.append(
            f"insured person {row['insured_id']}, {row['year']}: usage says fund {row['fund_paid_fen']} / "
            f"deductible {row['deductible_met_fen']}, the bills say {row['fund']} / {row['deductible']}"
        )
    for row in await Bill.raw(
        """
        SELECT r.out_refund_no, r.state, r.amount_fen, coalesce(sum(e.amount_fen), 0) AS receivable
        FROM bill_refund r
        LEFT JOIN ledger_journal j ON j.reference = 'refund:' || r.id
        LEFT JOIN ledger_entry e ON e.journal_id = j.id
          AND e.account_id IN (SELECT id FROM ledger_account WHERE kind = 'hospital_receivable')
        GROUP BY r.id
        HAVING coalesce(sum(e.amount_fen), 0) <> CASE
            WHEN r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION') THEN -r.amount_fen ELSE 0 END
        """
    ):
        problems.append(
            f"refund {row['out_refund_no']} ({row['state']} of {row['amount_fen']} fen) took "
            f"{-row['receivable']} fen from the hospital's receivable"
        )
    counts = {"bills": await Bill.count()}
    return problems, counts


async def full_audit() -> tuple[list[str], dict[str, int]]:
    """The ledger's invariants and the bills': (problems, what was checked)."""
    ledger_problems, ledger_counts = await ledger.audit()
    bill_problems, bill_counts = await audit()
    return ledger_problems + bill_problems, {**ledger_counts, **bill_counts}
