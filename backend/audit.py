"""`medpay audit`: every domain's money invariants, read in one snapshot, and the checks that
span domains (a drawdown against the bill's cash part it paid)."""

from __future__ import annotations

from backend.billing import audit as billing
from backend.booking import audit as booking
from backend.credit import audit as credit
from backend.credit.tables import Drawdown
from backend.family import audit as family
from backend.kiosk import audit as kiosk
from backend.ledger import service as ledger
from backend.piccolo_conf import DB


async def full_audit() -> tuple[list[str], dict[str, int]]:
    """The ledger's invariants, and those of bills, credit, booking, family and kiosks: (problems, what
    was checked). Every check reads one snapshot, so payments completing meanwhile are never half
    seen."""
    async with DB.transaction():
        await DB.run_ddl("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        problems, counts = await ledger.audit()
        for domain in (billing, credit, booking, family, kiosk):
            found, checked = await domain.audit()
            problems += found
            counts.update(checked)
        problems += await _credit_against_bills()
    return problems, counts


async def _credit_against_bills() -> list[str]:
    """Each drawdown moves with the cash part it pays, and each credit refund with the bill's."""
    problems = []
    for row in await Drawdown.raw(
        """
        SELECT d.id, d.status, d.amount_fen, b.code AS bank,
               c.state AS cash_state, c.amount_fen AS cash_fen, c.merchant_id
        FROM credit_drawdown d JOIN credit_line l ON l.id = d.line_id JOIN bank b ON b.id = l.bank_id
        LEFT JOIN cash_payment c ON c.out_trade_no = d.out_trade_no
        WHERE c.id IS NULL OR c.amount_fen <> d.amount_fen OR c.merchant_id IS DISTINCT FROM b.code
           OR (d.status IN ('DISBURSED', 'REPAID') AND c.state <> 'PAID')
           OR (d.status = 'RESERVED' AND c.state <> 'CREATED')
           OR (d.status = 'FAILED' AND c.state NOT IN ('FAILED', 'CLOSED'))
        """
    ):
        problems.append(
            f"drawdown {row['id']} ({row['status']}, {row['amount_fen']} fen at {row['bank']}): "
            f"its cash part is {row['cash_state']} for {row['cash_fen']} fen at {row['merchant_id']}"
        )
    for row in await Drawdown.raw(
        """
        SELECT coalesce(f.out_refund_no, r.out_refund_no) AS out_refund_no, f.amount_fen, r.cash_fen, r.state
        FROM credit_refund f
        JOIN credit_drawdown d ON d.id = f.drawdown_id
        FULL JOIN (
            SELECT r.* FROM bill_refund r JOIN cash_payment c ON c.bill_id = r.bill_id
            WHERE c.method = 'credit' AND c.state = 'PAID' AND r.cash_fen > 0
              AND r.state IN ('PROCESSING', 'SUCCEEDED', 'ATTENTION')
        ) r ON r.out_refund_no = f.out_refund_no AND r.bill_id = d.bill_id
        -- A refund the bank has not posted yet is PROCESSING; one it posted is confirmed next.
        WHERE (f.id IS NULL AND r.state = 'SUCCEEDED') OR r.id IS NULL OR f.amount_fen <> r.cash_fen
        """
    ):
        problems.append(
            f"refund {row['out_refund_no']}: the bank posted {row['amount_fen']} fen, the bill's refund is "
            f"{row['state']} for {row['cash_fen']} fen of cash"
        )
    return problems
