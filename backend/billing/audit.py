"""The bills' invariants against the ledger, the cash parts' collectors and the year-to-date usage."""

from __future__ import annotations

import uuid

from backend.billing.tables import Bill, BillState, CashPayment, Refund, RefundState
from backend.ledger import service as ledger

# Bills settled: PAYING, PAID, PARTIALLY_REFUNDED, REFUNDED. Refunds standing in the ledger:
# PROCESSING, SUCCEEDED, ATTENTION; REQUESTED and REJECTED ones have posted nothing.
STANDING_REFUNDS = (RefundState.PROCESSING, RefundState.SUCCEEDED, RefundState.ATTENTION)


async def audit() -> tuple[list[str], dict[str, int]]:
    problems = []
    for row in await Bill.raw(
        """
        SELECT b.bill_no, b.state, b.total_fen
        FROM bill b
        WHERE b.state IN ('PAYING', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED')
          AND (b.fund_fen IS NULL
               OR b.fund_fen + b.personal_account_fen + b.family_account_fen + b.cash_fen <> b.total_fen)
        """
    ):
        problems.append(f"bill {row['bill_no']} ({row['state']}): its parts do not sum to {row['total_fen']}")
    for row in await Bill.raw(
        """
        SELECT b.bill_no, b.state, b.cash_fen, c.state AS cash_state, c.amount_fen
        FROM bill b
        LEFT JOIN LATERAL (
            SELECT state, amount_fen FROM cash_payment WHERE bill_id = b.id ORDER BY id DESC LIMIT 1
        ) c ON true
        WHERE (b.state IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') AND b.cash_fen > 0
               AND (c.state IS DISTINCT FROM 'PAID' OR c.amount_fen <> b.cash_fen))
           OR (b.state = 'PAYING' AND b.cash_method IS NOT NULL AND c.state IS DISTINCT FROM 'CREATED')
           OR (b.state = 'PAYING' AND b.cash_method IS NULL AND c.state IS DISTINCT FROM 'FAILED')
           OR (b.state IN ('CLOSED', 'FAILED', 'CREATED') AND c.state IN ('PAID', 'CREATED'))
        """
    ):
        problems.append(
            f"bill {row['bill_no']} is {row['state']} but its cash payment is {row['cash_state']} "
            f"for {row['amount_fen']} fen (cash part {row['cash_fen']})"
        )
    receivable = await ledger.moved_by_reference("hospital_receivable")
    problems += await _receivables(receivable)
    problems += await _clearing(
        {
            **await ledger.balances("channel_clearing"),
            **await ledger.balances("bank_credit"),
            **await ledger.balances("counter_cash"),
        }
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
    for row in await Refund.select(Refund.id, Refund.out_refund_no, Refund.state, Refund.amount_fen):
        taken = -receivable.get(f"refund:{row['id']}", 0)
        if taken != (row["amount_fen"] if row["state"] in STANDING_REFUNDS else 0):
            problems.append(
                f"refund {row['out_refund_no']} ({row['state']} of {row['amount_fen']} fen) took "
                f"{taken} fen from the hospital's receivable"
            )
    counts = {"bills": await Bill.count()}
    return problems, counts


async def _receivables(receivable: dict[str, int]) -> list[str]:
    """Each bill's share of its hospital's receivable, against what its state says it holds."""
    problems = []
    standing: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = {}
    for refund in await Refund.select(Refund.id, Refund.bill_id, Refund.amount_fen).where(
        Refund.state.is_in(list(STANDING_REFUNDS))
    ):
        standing.setdefault(refund["bill_id"], []).append((refund["id"], refund["amount_fen"]))
    for bill in await Bill.select(
        Bill.id,
        Bill.bill_no,
        Bill.state,
        Bill.total_fen,
        Bill.refunded_fen,
        Bill.fund_fen,
        Bill.personal_account_fen,
        Bill.family_account_fen,
    ):
        refunds = standing.get(bill["id"], [])
        held = receivable.get(f"bill:{bill['id']}", 0) + sum(
            receivable.get(f"refund:{refund_id}", 0) for refund_id, _ in refunds
        )
        if bill["state"] == BillState.PAYING:
            expected = bill["fund_fen"] + bill["personal_account_fen"] + bill["family_account_fen"]
        elif bill["state"] in (BillState.PAID, BillState.PARTIALLY_REFUNDED, BillState.REFUNDED):
            expected = bill["total_fen"] - bill["refunded_fen"]
        else:
            expected = 0
        if held != expected:
            problems.append(
                f"bill {bill['bill_no']} ({bill['state']}): the hospital's receivable holds "
                f"{held} fen for it, expected {expected}"
            )
        if sum(amount for _, amount in refunds) != bill["refunded_fen"]:
            problems.append(
                f"bill {bill['bill_no']}: refunded_fen is {bill['refunded_fen']} "
                f"but its refunds total {sum(amount for _, amount in refunds)}"
            )
    return problems


async def _clearing(clearing: dict[str, int]) -> list[str]:
    """What each clearing account (a channel's, a bank's, a hospital's cash desk) holds, against the
    cash parts collected through it less the cash refunded."""
    collected: dict[str, int] = {}
    for row in await CashPayment.raw(
        """
        SELECT c.account, c.amount_fen - coalesce(sum(r.cash_fen), 0) AS held
        FROM cash_payment c
        LEFT JOIN bill_refund r
          ON r.bill_id = c.bill_id AND r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION')
        WHERE c.state = 'PAID'
        GROUP BY c.id
        """
    ):
        collected[row["account"]] = collected.get(row["account"], 0) + int(row["held"])
    held = {code: -balance for code, balance in clearing.items()}
    return [
        f"{code}: the ledger holds {held.get(code, 0)} fen collected, "
        f"the cash parts say {collected.get(code, 0)}"
        for code in sorted(set(collected) | set(held))
        if held.get(code, 0) != collected.get(code, 0)
    ]
